"""`make deploy-rayservice PROFILE=cpu-kind` on the real stack: the operator brings the RayService to Ready,
serving the champion the RayJob tests registered, and `POST /predict` through the API server's Service proxy
gets the right digits. It reads MLflow as the platform's serving user, which may read the model but write
nothing."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.support.local_cluster import NAMESPACE, PLATFORM_RELEASE, ROOT, MlflowReader
from tests.support.project_env import PROJECT_ENV

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

SERVE = PROJECT_ENV["SERVE_RELEASE"]
PREDICT = f"/api/v1/namespaces/{NAMESPACE}/services/{SERVE}-serve-svc:8000/proxy/predict"


def test_make_deploy_rayservice_serves_the_champion_through_the_serve_service(cluster, mlflow):
    champion = mlflow.call("registered-models/alias?name=mnist-cnn&alias=champion")
    assert champion["model_version"]["version"], "the RayJob tests registered a champion"
    started = time.monotonic()
    done = cluster.run("make", "deploy-rayservice", "PROFILE=cpu-kind", timeout=1200, check=False)
    print(f"make deploy-rayservice: exit {done.returncode} in {time.monotonic() - started:.0f} s\n{done.stdout[-1200:]}")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{cluster.diagnostics()}"
    assert "runs with Ray token authentication" in done.stdout
    # how to call it, once ready
    assert f"RayService {SERVE}: ready (Ready=True, " in done.stdout, done.stdout[-2000:]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{SERVE}-serve-svc 8000:8000" in done.stdout
    assert "localhost:8000/predict" in done.stdout and "http://localhost:8000/" in done.stdout

    images = np.load(ROOT / "data" / "mnist" / "test_images.npy")[:32]
    labels = np.load(ROOT / "data" / "mnist" / "test_labels.npy")[:32]
    status, body = cluster.through_api(PREDICT, json.dumps({"pixels": images.tolist()}).encode(), timeout=60)
    assert status == 200, body[:2000]
    digits = np.array([p["digit"] for p in json.loads(body)["predictions"]])
    assert len(digits) == 32 and (digits == labels).mean() >= 0.8, (digits, labels)
    status, body = cluster.through_api(PREDICT, b"{not json")
    assert status == 400 and b"JSON" in body, body[:500]

    # every pod of the RayService read the model as the serving user: its Secret at ~/.mlflow, not the training one
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", f"kuberay-mnist/rayjob={SERVE}")
    assert {p["metadata"]["labels"]["ray.io/node-type"] for p in pods} == {"head", "worker"}, pods
    for pod in pods:
        secrets = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
        assert secrets == {f"{PLATFORM_RELEASE}-s3-training", f"{PLATFORM_RELEASE}-mlflow-serving"}, (
            pod["metadata"]["name"], secrets)


def test_the_serving_user_reads_the_champion_and_may_write_nothing(cluster, mlflow):
    """The user of <platform>-mlflow-serving (what the RayService mounts), over MLflow's REST API: it reads the
    registered model, its champion alias and the version's run (the model's files are the experiment's), and every
    write to them is refused with 403."""
    serving = MlflowReader.as_user(cluster, f"{PLATFORM_RELEASE}-mlflow-serving")
    assert serving.user == "mnist-serving"
    champion = serving.call("registered-models/alias?name=mnist-cnn&alias=champion")["model_version"]
    assert champion == mlflow.call("registered-models/alias?name=mnist-cnn&alias=champion")["model_version"]
    assert serving.call("registered-models/get?name=mnist-cnn")["registered_model"]["name"] == "mnist-cnn"
    run_id = champion["run_id"]
    run = serving.call(f"runs/get?run_id={run_id}")["run"]
    experiment = run["info"]["experiment_id"]
    writes = {
        "move the champion alias": ("registered-models/alias", {"name": "mnist-cnn", "alias": "champion",
                                                                "version": champion["version"]}),
        "tag the registered model": ("registered-models/set-tag", {"name": "mnist-cnn", "key": "k", "value": "v"}),
        "add a model version": ("model-versions/create", {"name": "mnist-cnn", "source": champion["source"],
                                                          "run_id": run_id}),
        "log a metric to the champion's run": ("runs/log-metric", {"run_id": run_id, "key": "k", "value": 1.0,
                                                                   "timestamp": 0, "step": 0}),
        "create a run in the experiment": ("runs/create", {"experiment_id": experiment}),
        "tag the experiment": ("experiments/set-experiment-tag", {"experiment_id": experiment, "key": "k",
                                                                  "value": "v"}),
    }
    refused = {what: serving.status(path, body) for what, (path, body) in writes.items()}
    assert refused == dict.fromkeys(writes, 403), refused
    after = mlflow.call("registered-models/alias?name=mnist-cnn&alias=champion")["model_version"]
    assert after == champion and "k" not in {t["key"] for t in mlflow.call("registered-models/get?name=mnist-cnn")[
        "registered_model"].get("tags", [])}
