"""The registered model as its users meet it: raw pixels in a stock MLflow client, tags, the champion alias.

Real `mlflow server` (tests/conftest.py: champion_server) holding a really trained network.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loopback import services
from loopback.models import register
from tests.support.cli import run_cli

# Run in a fresh interpreter outside the project: what a user without this package does.
STOCK_CLIENT = """
import json, sys
import numpy as np
import mlflow.pyfunc

images, labels = np.load(sys.argv[2]), np.load(sys.argv[3])
model = mlflow.pyfunc.load_model(sys.argv[1])
raw = model.predict(images)
as_float_4d = model.predict(images[:500, None].astype(np.float32))
try:
    model.predict(images[:5] / 255.0)
    refusal = None
except Exception as exc:
    refusal = str(exc)
print(json.dumps({
    "accuracy": float((raw["digit"].to_numpy() == labels).mean()),
    "columns": list(raw.columns),
    "row_sums": [float(raw.iloc[i, 1:].sum()) for i in range(3)],
    "float_4d_same": bool((as_float_4d["digit"].to_numpy() == raw["digit"].to_numpy()[:500]).all()),
    "refusal": refusal,
    "imported_mnist_job": any(m.split(".")[0] == "mnist_job" for m in sys.modules),
}))
"""


def test_a_stock_client_gets_the_packages_accuracy_from_raw_uint8_pixels(champion_server, prepared_dataset, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(STOCK_CLIENT)
    env = services.base_env(MLFLOW_TRACKING_URI=champion_server.tracking_uri)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(script), f"models:/{champion_server.name}@champion",
                           str(prepared_dataset / "test_images.npy"), str(prepared_dataset / "test_labels.npy")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["imported_mnist_job"]
    assert seen["columns"] == ["digit"] + [f"p{d}" for d in range(10)]
    assert all(abs(total - 1) < 1e-4 for total in seen["row_sums"]), "probabilities sum to 1"
    assert champion_server.test_accuracy > 0.95, "the test network learned"
    assert abs(seen["accuracy"] - champion_server.test_accuracy) <= 0.0002, (seen["accuracy"], champion_server.test_accuracy)
    assert seen["float_4d_same"], "float 0..255 pixels in (N, 1, 28, 28) give the same digits"
    assert seen["refusal"] and "0..255" in seen["refusal"], "0..1 floats are refused, not answered wrongly"


def test_registered_versions_carry_their_origin(champion_server):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=champion_server.tracking_uri)
    tags = client.get_model_version(champion_server.name, champion_server.version).tags
    assert float(tags["test_accuracy"]) == pytest.approx(champion_server.test_accuracy, abs=1e-6)
    assert tags["test_images"] == "10000" and tags["run_id"] == champion_server.run_id
    assert {"git_commit", "dvc_data_md5"} <= set(tags)
    assert client.get_model_version_by_alias(champion_server.name, "champion").version == champion_server.version


def test_the_champion_moves_only_on_improvement_and_promote_moves_it_by_hand(tmp_path, prepared_dataset, trained_network):
    from mlflow import MlflowClient

    from mnist_job.tracking.registry import crown_if_better

    server = services.start_mlflow(tmp_path / "logs", tmp_path / "mlflow")
    try:
        first = register(server.uri, trained_network, prepared_dataset, tmp_path / "final",
                         run_tags={"git.commit": "abc123", "dvc.data_md5": "0123abcd.dir"})
        client = MlflowClient(tracking_uri=server.uri)
        assert client.get_model_version(first.name, first.version).tags["git_commit"] == "abc123"
        source = client.get_model_version(first.name, first.version).source

        def candidate(accuracy: float, images: int = 10000) -> str:
            version = client.create_model_version(first.name, source, run_id=first.run_id,
                                                  model_id=source.removeprefix("models:/")).version
            client.set_model_version_tag(first.name, version, "test_accuracy", f"{accuracy:.6f}")
            client.set_model_version_tag(first.name, version, "test_images", str(images))
            crown_if_better(client, first.name, version)
            return client.get_model_version_by_alias(first.name, "champion").version

        assert candidate(first.test_accuracy) == "1", "a tie keeps the champion"
        assert candidate(first.test_accuracy - 0.01) == "1", "worse keeps the champion"
        assert candidate(0.9999, images=500) == "1", "a score on a smaller test set does not compare"
        assert candidate(first.test_accuracy + 0.001) == "5", "better takes the alias"

        env = services.base_env(MLFLOW_TRACKING_URI=server.uri)
        done = run_cli("promote", "--version", "2", env=env)
        assert done.returncode == 0 and "mnist-cnn@champion -> version 2" in done.stdout, done.stderr
        assert client.get_model_version_by_alias(first.name, "champion").version == "2"
        for args, message in ((["--version", "42"], "--version: mnist-cnn has no version 42 (versions: 1, 2, 3, 4, 5)"),
                              (["--version", "1", "--model", "nope"], "--model: no registered model named 'nope'")):
            done = run_cli("promote", *args, env=env)
            assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert client.get_model_version_by_alias(first.name, "champion").version == "2"
    finally:
        server.stop()


def test_mlflows_own_scoring_server_answers_with_the_right_digits(champion_server, prepared_dataset, tmp_path):
    """`mlflow models serve --env-manager local` on the champion: the model works with MLflow's standard tools."""
    import urllib.request

    import numpy as np

    port = services.free_port()
    env = services.base_env(MLFLOW_TRACKING_URI=champion_server.tracking_uri)
    env.pop("PYTHONPATH", None)
    server = services.start("mlflow-models-serve", [str(services.VENV_BIN / "mlflow"), "models", "serve", "-m",
                                                    f"models:/{champion_server.name}@champion", "--env-manager",
                                                    "local", "-h", "127.0.0.1", "-p", str(port)],
                            tmp_path / "logs", env=env, cwd=tmp_path)
    try:
        services.wait_http(f"http://127.0.0.1:{port}/ping", 300, server)
        images = np.load(prepared_dataset / "test_images.npy")[:100]
        labels = np.load(prepared_dataset / "test_labels.npy")[:100]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": images.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.load(response)["predictions"]
        digits = np.array([p["digit"] for p in predictions])
        assert len(digits) == 100 and (digits == labels).mean() >= 0.9, digits
    finally:
        server.stop()
