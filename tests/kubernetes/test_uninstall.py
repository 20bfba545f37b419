"""Last of this folder (it removes the platform): `helm uninstall` keeps the PVCs and what is on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopback.polling import wait_until
from tests.support.local_cluster import NAMESPACE, PLATFORM_RELEASE

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


def test_helm_uninstall_keeps_the_pvcs_and_their_data(cluster):
    def claims() -> dict[str, str]:
        return {c["metadata"]["name"]: c["spec"].get("volumeName", "") for c in cluster.items("pvc", "-n", NAMESPACE)}

    before = claims()
    assert set(before) == {f"{PLATFORM_RELEASE}-minio", f"{PLATFORM_RELEASE}-mlflow"}, before
    mlflow_volume = Path(cluster.get("pv", before[f"{PLATFORM_RELEASE}-mlflow"])["spec"]["hostPath"]["path"])
    stored = sorted(p.name for p in mlflow_volume.iterdir())
    assert stored, "MLflow wrote its store on its volume"
    cluster.run("helm", "uninstall", PLATFORM_RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "3m",
                timeout=240)
    # the Deployments' pods go (the hook Jobs' finished pods stay: helm leaves hooks to their delete policy)
    served = f"app.kubernetes.io/instance={PLATFORM_RELEASE},app.kubernetes.io/component in (minio,mlflow)"
    wait_until(lambda: not cluster.items("pods", "-n", NAMESPACE, "-l", served), 120,
               "MinIO's and MLflow's pods outlived helm uninstall", interval=2)
    assert claims() == before, "helm uninstall kept the claims, bound to the same volumes"
    assert sorted(p.name for p in mlflow_volume.iterdir()) == stored, "and their data"
