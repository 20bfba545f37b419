"""scripts/deploy-rayservice.sh (`make deploy-rayservice`): the RayService rendered for each
profile, and the wait on KubeRay 1.7's RayService status (the Ready condition, the Serve
application's status) until ready, failed or timed out.

Rendering is real (helm). The wait loop runs against tests/support/fake_kubectl.py:
no Kubernetes API server can run on these machines.
"""

from __future__ import annotations

import sys

import pytest
import yaml
from manifest_helpers import ROOT, SERVE_RELEASE, one, run

sys.path.insert(0, str(ROOT))
from tests.support import deploy_scripts  # noqa: E402
from tests.support.deploy_scripts import DEV_MARK, MLFLOW_SECRET, S3_SECRET  # noqa: E402

SCRIPT = "scripts/deploy-rayservice.sh"
NAME = SERVE_RELEASE


def render(*args: str) -> list[dict]:
    proc = run(["bash", str(ROOT / SCRIPT), "--render-only", *args], timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def status(ready: str = "False", reason: str = "Initializing", message: str = "", app: str = "",
           app_message: str = "", upgrading: str = "False", where: str = "activeServiceStatus") -> dict:
    """A KubeRay 1.7 RayService status: the Ready and UpgradeInProgress conditions, the mnist app's status."""
    out: dict = {"conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message},
                                {"type": "UpgradeInProgress", "status": upgrading, "reason": reason}]}
    if app:
        out[where] = {"applicationStatuses": {"mnist": {"status": app, "message": app_message}}}
    return out


INITIALIZING = status()
DEPLOYING = status(app="DEPLOYING")
READY = status("True", "NonZeroServeEndpoints", app="RUNNING")


def deploy(tmp_path, statuses, *args, **state):
    return deploy_scripts.deploy_with(SCRIPT, tmp_path, NAME, statuses, *args, **state)


@pytest.mark.parametrize("profile", ["cpu-kind", "gpu"])
def test_renders_the_rayservice_and_no_rayjob(tools, profile):
    docs = render("--profile", profile)
    service = one(docs, "RayService")
    assert service["metadata"]["name"] == NAME
    assert not [d for d in docs if d["kind"] == "RayJob"]
    allowed = service["metadata"].get("annotations", {}).get("kuberay-mnist/development-credentials-allowed")
    assert allowed == ("true" if profile == "cpu-kind" else None)


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


def test_ready_prints_how_to_call_it(tools, tmp_path):
    proc, state = deploy(tmp_path, [INITIALIZING, DEPLOYING, READY])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"RayService {NAME}: ready (Ready=True, NonZeroServeEndpoints)" in proc.stdout
    assert f"kubectl -n mnist port-forward svc/{NAME}-serve-svc 8000:8000" in proc.stdout
    assert "localhost:8000/predict" in proc.stdout and "http://localhost:8000/" in proc.stdout
    assert state["polls"] == 3, "it stops at the first ready status"
    (applied,) = state["applied"]
    assert one([d for d in yaml.safe_load_all(applied) if d], "RayService")["metadata"]["name"] == NAME
    assert state["deleted"] == [], "a RayService is updated in place, never deleted first"
    assert f"head pod {deploy_scripts.head_pod(NAME)['name']} runs with Ray token authentication" in proc.stdout


def test_update_waits_for_the_pending_cluster(tools, tmp_path):
    """During an update the old cluster keeps Ready=True: ready only once the upgrade is over."""
    upgrading = status("True", "NonZeroServeEndpoints", app="DEPLOYING", upgrading="True", where="pendingServiceStatus")
    proc, state = deploy(tmp_path, [upgrading, upgrading, READY], exists=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "upgrade=True" in proc.stdout and state["polls"] == 3


@pytest.mark.parametrize(
    "final,message",
    [
        (status(reason="ValidationFailed", message="spec.serveConfigV2 is invalid"), "spec.serveConfigV2 is invalid"),
        (status(reason="InitializingTimeout", message="RayService failed to become ready within 10m"),
         "failed to become ready within 10m"),
        (status(app="DEPLOY_FAILED", app_message="RestException: RESOURCE_DOES_NOT_EXIST: alias champion"),
         "alias champion"),
    ],
    ids=["validation-failed", "initializing-timeout", "deploy-failed"],
)
def test_failure_exits_1_with_the_reason(tools, tmp_path, final, message):
    proc, state = deploy(tmp_path, [INITIALIZING, final])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"RayService {NAME} failed:" in proc.stderr and message in proc.stderr
    assert state["polls"] == 2, "it kept polling after a terminal state"
    assert "port-forward" not in proc.stdout


def test_timeout_exits_1(tools, tmp_path):
    proc, state = deploy(tmp_path, [INITIALIZING, DEPLOYING], env={"TIMEOUT_S": "3"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"RayService {NAME} was not ready after 3s: ready=False reason=Initializing" in proc.stderr
    assert "app=DEPLOYING" in proc.stderr
    assert 2 <= state["polls"] <= 5


def test_head_without_token_auth_is_deleted(tools, tmp_path):
    proc, state = deploy(tmp_path, [DEPLOYING, READY], pods=[deploy_scripts.head_pod(NAME, "disabled")])
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "runs without Ray token authentication (RAY_AUTH_MODE=disabled" in proc.stderr
    assert f"deleting RayService {NAME}" in proc.stderr
    assert state["deleted"] == [NAME]


def test_production_profile_refuses_development_credentials(tools, tmp_path):
    proc, state = deploy(tmp_path, [READY], "--profile", "gpu", secrets={S3_SECRET: DEV_MARK, MLFLOW_SECRET: {}})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"deploy-rayservice: refusing Secret {S3_SECRET}" in proc.stderr
    assert state["applied"] == []


def test_kind_profile_may_use_development_credentials(tools, tmp_path):
    proc, state = deploy(tmp_path, [READY], "--profile", "cpu-kind", secrets={S3_SECRET: DEV_MARK, MLFLOW_SECRET: {}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(state["applied"]) == 1


def test_missing_secret_exits_3(tools, tmp_path):
    proc, state = deploy(tmp_path, [READY], secrets={S3_SECRET: {}})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"Secret {MLFLOW_SECRET} not found in namespace mnist" in proc.stderr
    assert state["applied"] == []


def test_no_cluster_exits_3(tools, tmp_path):
    proc, _ = deploy(tmp_path, [], crd=False)
    assert proc.returncode == 3
    assert "cannot list RayServices in namespace mnist" in proc.stderr
