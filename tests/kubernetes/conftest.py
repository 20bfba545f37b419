"""One local Kubernetes cluster for this folder's tests: upstream control plane and KubeRay operator, the node
agent, the platform chart and the dataset, as `make cluster-up` leaves them (tests/support/local_cluster.py).
Stopped after the folder's last test, so the rest of the suite runs on idle cores.

Its state lives under /var/tmp (the pods' folders; each pod has its own /tmp), apart from a developer's
.cluster, and goes with the session; cluster-down stops every process it started, also when a test fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import local_cluster
from tests.support.local_cluster import NAMESPACE


@pytest.fixture(scope="package")
def cluster():
    state = Path(tempfile.mkdtemp(prefix="kuberay-cluster-", dir="/var/tmp"))
    started = local_cluster.start(state)
    try:
        yield started
    finally:
        local_cluster.stop(started)
        shutil.rmtree(state / "node", ignore_errors=True)
        print(f"local cluster: logs kept in {state / 'logs'}", flush=True)


@pytest.fixture(scope="package")
def mlflow(cluster):
    return local_cluster.MlflowReader.of(cluster)


@pytest.fixture(scope="package")
def champion(cluster, mlflow) -> dict:
    """The registered model's champion version. test_rayjob.py registers one first; a module run without it
    trains one with the static manifest (then deletes the RayJob: its pods hold the node's CPUs)."""
    alias = "registered-models/alias?name=mnist-cnn&alias=champion"
    if mlflow.status(alias) != 200:
        cluster.kubectl("apply", "-f", "k8s/rayjob-cpu-kind.yaml")
        cluster.wait_succeeded("mnist-train", 900)
        cluster.kubectl("delete", "rayjob", "mnist-train", "-n", NAMESPACE, "--wait=true", timeout=180)
    return mlflow.call(alias)["model_version"]
