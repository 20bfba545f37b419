"""The platform chart and the deploy scripts' refusals against the real API server and operator: helm's
`lookup` on a live server, a credentials check before anything is applied, and KubeRay's own validation."""

from __future__ import annotations

import pytest

from tests.support.local_cluster import NAMESPACE, PLATFORM_RELEASE

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

CHART = "charts/kuberay-mnist-platform"
GENERATED = (f"{PLATFORM_RELEASE}-dev-s3-credentials", f"{PLATFORM_RELEASE}-mlflow-admin")


def test_helm_upgrade_keeps_the_generated_development_passwords(cluster, mlflow):
    before = {name: cluster.get("secret", name, "-n", NAMESPACE)["data"] for name in GENERATED}
    cluster.run("helm", "upgrade", PLATFORM_RELEASE, CHART, "--namespace", NAMESPACE, "-f", f"{CHART}/values-dev.yaml",
                "--set-string", "image.repository=kuberay-mnist", "--set-string", "image.tag=dev-cpu",
                "--wait", "--timeout", "5m", timeout=420)
    after = {name: cluster.get("secret", name, "-n", NAMESPACE)["data"] for name in GENERATED}
    assert after == before, "helm upgrade generated new passwords: its lookup did not find the installed Secrets"
    assert mlflow.call("experiments/search?max_results=1") is not None  # MLflow still takes the kept password


def test_a_missing_credentials_secret_is_refused_before_anything_is_applied(cluster):
    cluster.kubectl("create", "namespace", "no-platform")
    # the script itself: make turns every failing recipe into its own exit 2
    done = cluster.run("bash", "scripts/deploy-rayjob.sh", "--profile", "cpu-kind", timeout=180, check=False,
                       NAMESPACE="no-platform")
    assert done.returncode == 3, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Secret" in done.stderr and "not found" in done.stderr, done.stderr[-2000:]
    for kind in ("rayjobs", "networkpolicies", "configmaps"):
        names = [o["metadata"]["name"] for o in cluster.items(kind, "-n", "no-platform")]
        assert names in ([], ["kube-root-ca.crt"]), f"{kind} applied before the refusal: {names}"


def test_a_rayjob_the_operator_rejects_ends_the_deploy_with_kuberays_message(cluster):
    rule = ("lifecycle.deletionRules[{i}].policy=DeleteWorkers", "lifecycle.deletionRules[{i}].condition.jobStatus=SUCCEEDED",
            "lifecycle.deletionRules[{i}].condition.ttlSeconds=0")
    duplicate = [arg for i in (0, 1) for value in rule for arg in ("--set", value.format(i=i))]
    done = cluster.run("bash", "scripts/deploy-rayjob.sh", "--profile", "cpu-kind", "--", *duplicate, timeout=300,
                       check=False)
    assert done.returncode == 1, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "jobDeploymentStatus=ValidationFailed" in done.stderr, done.stderr[-2000:]
    assert "duplicate rule for DeletionPolicyType 'DeleteWorkers'" in done.stderr, done.stderr[-2000:]
