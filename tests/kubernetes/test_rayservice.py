"""`make deploy-rayservice PROFILE=cpu-kind` on the real stack: the operator brings the RayService to Ready,
serving the champion the RayJob tests registered, and `POST /predict` through the API server's Service proxy
gets the right digits."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.support.local_cluster import NAMESPACE, ROOT
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
