"""The tuning RayJob through the real stack: `kubectl apply -f k8s/rayjob-tune-cpu-kind.yaml`, its study made
small enough for CI (2 trials of 1 epoch, appended to the entrypoint), run by the KubeRay operator on the node
agent's pods: the study's trials nested under its run in MLflow, its state in the platform's S3 (what a retry of
the RayJob resumes from)."""

from __future__ import annotations

import re

import pytest

from tests.support.local_cluster import NAMESPACE

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

TUNE = "k8s/rayjob-tune-cpu-kind.yaml"
NAME = "mnist-tune"  # the static manifest's RayJob, and so the study's name
TINY_STUDY = " --set tune.trials=2 --set tune.max_epochs=1"
JOB_TIMEOUT_S = 900


def tiny(rayjob: dict) -> None:
    rayjob["spec"]["entrypoint"] += TINY_STUDY


def test_the_tuning_rayjob_runs_a_study_with_its_trials_nested(cluster, mlflow, tmp_path):
    rayjob = cluster.apply_edited(TUNE, tiny, tmp_path)
    try:
        check_study(cluster, mlflow, rayjob)
    finally:  # its pods would hold the node's CPUs for the next tests
        cluster.kubectl("delete", "-f", str(tmp_path / "rayjob-tune-cpu-kind.yaml"), "--wait=false", check=False)


def check_study(cluster, mlflow, rayjob: dict) -> None:
    cluster.wait_succeeded(NAME, JOB_TIMEOUT_S)
    logs = cluster.kubectl("logs", f"job/{NAME}", "-n", NAMESPACE, timeout=60).stdout
    assert f"study: {NAME}: 2 trials" in logs, logs[-3000:]
    (study_run,) = re.findall(r"^study run: (\w+) ", logs, flags=re.M)
    parent = mlflow.call(f"runs/get?run_id={study_run}")["run"]
    assert parent["info"]["status"] == "FINISHED", parent["info"]
    children = mlflow.call("runs/search", {"experiment_ids": [parent["info"]["experiment_id"]],
                                           "filter": f"tags.`mlflow.parentRunId` = '{study_run}'"}).get("runs", [])
    assert len(children) == 2 and all(c["info"]["status"] == "FINISHED" for c in children), \
        [c["info"] for c in children]
    tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    assert tags["best.run_id"] in {c["info"]["run_id"] for c in children}, tags
    # the study's state, where the entrypoint's tune.storage_path says (s3://<bucket>/<prefix>/<study>)
    storage = re.search(r"tune\.storage_path=s3://(\S+)", rayjob["spec"]["entrypoint"]).group(1)
    bucket, _, prefix = storage.partition("/")
    keys = cluster.s3_keys(bucket, f"{prefix}/{NAME}/")
    assert any("experiment_state" in k for k in keys), f"no study state in s3://{storage}/{NAME}: {keys[:20]}"
    print(f"study {NAME}: run {study_run}, trials {[c['info']['run_id'] for c in children]}, "
          f"{len(keys)} objects in s3://{storage}/{NAME}")
