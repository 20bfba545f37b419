"""A served champion that moves: every replica swaps the new version in without dropping a request, and every
answer names the version that gave it (mnist_job/serving/champion.py). A real `mlflow server`, `ray start` and
`mnist-job serve --follow-champion-s 1`, under a steady load from one client while the alias moves."""

from __future__ import annotations

import threading

import numpy as np
from mlflow import MlflowClient

from loopback.models import register
from loopback.polling import wait_until
from loopback.serving import serving

NAME = "mnist-follow"


def test_the_alias_moves_under_load_and_no_request_is_lost(tmp_path, champion_server, trained_network,
                                                             prepared_dataset):
    first = register(champion_server.tracking_uri, trained_network, prepared_dataset, tmp_path / "v1", NAME)
    second = register(champion_server.tracking_uri, trained_network, prepared_dataset, tmp_path / "v2", NAME)
    client = MlflowClient(tracking_uri=champion_server.tracking_uri)
    client.set_registered_model_alias(NAME, "champion", first.version)
    image = np.load(prepared_dataset / "test_images.npy")[0]
    answers, stop = [], threading.Event()
    with serving(tmp_path, champion_server.tracking_uri, args=("--model", NAME, "--follow-champion-s", "1")) as app:

        def load():
            while not stop.is_set():
                answers.append(app.predict({"pixels": image.tolist()}))

        client_thread = threading.Thread(target=load)
        client_thread.start()
        try:
            wait_until(lambda: len(answers) >= 20, 120, "the load did not get going")
            moved_at = len(answers)
            client.set_registered_model_alias(NAME, "champion", second.version)  # as `mnist-job promote` does
            wait_until(lambda: sum(1 for _, a in answers[moved_at:] if a.get("version") == second.version) >= 20,
                       120, lambda: f"still answering with {answers[-1]}")
        finally:
            stop.set()
            client_thread.join(60)
        health = app.request("healthz")[1]

    statuses = {status for status, _ in answers}
    versions = [answer["version"] for _, answer in answers]
    switch = versions.index(second.version)
    print(f"\n{len(answers)} answers: {switch} by version {first.version}, then {len(versions) - switch} by "
          f"version {second.version}; the alias moved before answer {moved_at}")
    assert statuses == {200}, "no request failed while the new version loaded"
    assert versions[:switch] == [first.version] * switch and set(versions[switch:]) == {second.version}, \
        "answers before the switch come from the old version, after it from the new one, never mixed"
    assert switch >= moved_at, "nothing answered by the new version before the alias moved"
    assert health["version"] == second.version
