"""scripts/deploy-rayservice.sh (`make deploy-rayservice`) without a cluster: the RayService rendered
for each profile, its argument checks, and its exit when kubectl reaches no cluster.

What it does on a cluster (the wait until ready or timed out, the Secrets and token-auth checks):
tests/kubernetes/test_rayservice.py and test_deploy_scripts.py, on the real API server.
"""

from __future__ import annotations

import pytest
import yaml
from manifest_helpers import PLATFORM_RELEASE, ROOT, SERVE_RELEASE, mounted_secrets, one, rayjob_pod_templates, run

SCRIPT = "scripts/deploy-rayservice.sh"
NAME = SERVE_RELEASE


def render(*args: str) -> list[dict]:
    proc = run(["bash", str(ROOT / SCRIPT), "--render-only", *args], timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize("profile", ["cpu-kind", "gpu"])
def test_renders_the_rayservice_and_no_rayjob(tools, profile):
    docs = render("--profile", profile)
    service = one(docs, "RayService")
    assert service["metadata"]["name"] == NAME
    assert not [d for d in docs if d["kind"] == "RayJob"]
    allowed = service["metadata"].get("annotations", {}).get("kuberay-mnist/development-credentials-allowed")
    assert allowed == ("true" if profile == "cpu-kind" else None)
    # MLflow as the platform's read-only serving user (the script names the platform release's Secrets)
    for role, template in rayjob_pod_templates(service).items():
        assert mounted_secrets(template, template["spec"]["containers"][0]) == {
            f"{PLATFORM_RELEASE}-s3-training", f"{PLATFORM_RELEASE}-mlflow-serving"}, role


def test_image_repository_for_a_users_registry(tools):
    service = one(render("--profile", "gpu", "--image", "registry.example.com/team/kuberay-mnist"), "RayService")
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head == "registry.example.com/team/kuberay-mnist:0.1.0-cpu"


@pytest.mark.parametrize(
    "args,message",
    [
        (("--profile", "tpu"), "PROFILE must be cpu-kind or gpu"),
        (("--name", "Mnist_Serve"), "must be a lowercase DNS label of at most 38 characters"),
        (("--name", "a" * 39), "must be a lowercase DNS label of at most 38 characters"),
        (("--bogus",), "unknown argument '--bogus'"),
    ],
)
def test_bad_arguments_exit_2(tools, args, message):
    proc = run(["bash", str(ROOT / SCRIPT), "--render-only", *args], timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "deploy-rayservice: " in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_cluster_exits_3(tools, no_cluster):
    proc = run(["bash", str(ROOT / SCRIPT)], extra_env=no_cluster, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot list RayServices in namespace mnist: no cluster in the current kubectl context" in proc.stderr
