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


def test_serving_workers_are_restarted_when_their_serve_proxy_stops_answering(tools):
    """A worker's liveness asks its raylet and its Serve proxy (KubeRay's asks the raylet only); the head's and a
    RayJob's workers keep KubeRay's probes. tests/kubernetes/test_rayservice.py runs the probe in the pods."""
    docs = render("--profile", "cpu-kind", "--", "--set", "rayService.livenessFailures=3")
    templates = rayjob_pod_templates(one(docs, "RayService"))
    (worker,) = [t for role, t in templates.items() if role.startswith("worker")]
    probe = worker["spec"]["containers"][0]["livenessProbe"]
    command = probe["exec"]["command"][-1]
    assert "http://localhost:52365/api/healthz" in command and "http://localhost:8000/-/healthz" in command
    assert probe["failureThreshold"] == 3 and probe["timeoutSeconds"] > 2 * 5
    assert "livenessProbe" not in templates["head"]["spec"]["containers"][0]
    rayjob = one([d for d in yaml.safe_load_all((ROOT / "k8s" / "rayjob-cpu-kind.yaml").read_text()) if d], "RayJob")
    assert not [t for t in rayjob_pod_templates(rayjob).values() if "livenessProbe" in t["spec"]["containers"][0]]


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
