"""scripts/deploy-rayjob.sh: one RayJob (and one run) per deployment, and the wait
on KubeRay 1.7's terminal states.

Rendering is real (helm). The wait loop runs against tests/support/fake_kubectl.py:
no Kubernetes API server can run on these machines.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import pytest
import yaml
from manifest_helpers import ROOT, mounted_secrets, one, run

sys.path.insert(0, str(ROOT))
from tests.support import deploy_scripts  # noqa: E402
from tests.support.deploy_scripts import DEV_MARK, MLFLOW_SECRET, S3_SECRET  # noqa: E402

SCRIPT = str(ROOT / "scripts" / "deploy-rayjob.sh")


def deploy(*args: str, env: dict[str, str] | None = None):
    return run(["bash", SCRIPT, *args], extra_env=env, timeout=120)


def render(*args: str, stamp: str | None = None) -> dict:
    proc = deploy("--render-only", *args, env={"DEPLOY_TIMESTAMP": stamp} if stamp else None)
    assert proc.returncode == 0, proc.stderr
    return one([d for d in yaml.safe_load_all(proc.stdout) if d], "RayJob")


def run_of(rayjob: dict) -> tuple[str, str]:
    """(run name, checkpoint prefix) the training entrypoint gets."""
    sets = dict(a.split("=", 1) for a in re.findall(r"--set (\S+)", rayjob["spec"]["entrypoint"]))
    return sets["train.run_name"], f"{sets['train.storage_path']}/{sets['train.run_name']}"


@pytest.mark.parametrize("profile", ["cpu-kind", "gpu"])
def test_each_deployment_is_its_own_rayjob_and_run(tools, profile):
    first = render("--profile", profile, stamp="20261126-140000")
    second = render("--profile", profile, stamp="20261126-151500")
    assert first["metadata"]["name"] == "mnist-train-20261126-140000"
    assert second["metadata"]["name"] == "mnist-train-20261126-151500"
    (run1, prefix1), (run2, prefix2) = run_of(first), run_of(second)
    assert run1 == first["metadata"]["name"] and run2 == second["metadata"]["name"]
    assert run1 != run2 and prefix1 != prefix2
    assert prefix1 == "s3://ray-checkpoints/ray-results/mnist-train-20261126-140000"
    # A retry is KubeRay re-running this same object (backoffLimit): same name, same run.
    assert "backoffLimit" in first["spec"]
    # Redeploying that run by name renders the very same RayJob: it resumes.
    again = render("--profile", profile, "--name", run1)
    assert again == first


def test_default_name_is_the_current_utc_time(tools):
    before = datetime.now(UTC).replace(microsecond=0)
    name = render()["metadata"]["name"]
    after = datetime.now(UTC)
    m = re.fullmatch(r"mnist-train-(\d{8}-\d{6})", name)
    assert m, name
    stamp = datetime.strptime(m.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert len(name) <= 47


def test_image_repository_for_a_users_registry(tools):
    rj = render("--profile", "gpu", "--image", "registry.example.com/team/kuberay-mnist", stamp="20261126-140000")
    spec = rj["spec"]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"]
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]["image"]
    assert head == submitter == "registry.example.com/team/kuberay-mnist:0.1.0-cpu"
    assert worker == "registry.example.com/team/kuberay-mnist:0.1.0-gpu"


@pytest.mark.parametrize(
    "args,env,message",
    [
        (("--profile", "tpu"), {}, "PROFILE must be cpu-kind or gpu"),
        (("--image", "ghcr.io/you/kuberay-mnist:1.0"), {}, "IMAGE must be an image repository without a tag"),
        ((), {"DEPLOY_TIMESTAMP": "2026-11-26"}, "DEPLOY_TIMESTAMP must be yyyymmdd-hhmmss"),
        ((), {"RAYJOB_RELEASE": "a-release-name-that-is-far-too-long-for-kuberay"}, "at most 31 characters"),
        (("--bogus",), {}, "unknown argument '--bogus'"),
        (("--name",), {}, "--name needs a value"),
        (("--name", "Mnist_Run"), {}, "must be a DNS-1035 label"),
    ],
)
def test_bad_arguments_exit_2(tools, args, env, message):
    proc = deploy("--render-only", *args, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


NAME = "mnist-train-20261126-140000"


def head_pod(auth_mode: str | None = "token", phase: str = "Running") -> dict:
    return deploy_scripts.head_pod(NAME, auth_mode, phase)


def wait_with(tmp_path, statuses, *args, **state):
    return deploy_scripts.deploy_with("scripts/deploy-rayjob.sh", tmp_path, NAME, statuses, *args,
                                      env={"DEPLOY_TIMESTAMP": "20261126-140000"}, **state)


def test_wait_succeeds_on_complete(tools, tmp_path):
    proc, state = wait_with(
        tmp_path,
        [{"jobDeploymentStatus": "Initializing"}, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
         {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RayJob mnist-train-20261126-140000: SUCCEEDED" in proc.stdout
    (applied,) = state["applied"]
    assert one([d for d in yaml.safe_load_all(applied) if d], "RayJob")["metadata"]["name"] == "mnist-train-20261126-140000"


@pytest.mark.parametrize(
    "final,reason,message",
    [
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, "AppFailed", "the job failed"),
        ({"jobDeploymentStatus": "Failed"}, "PreRunningDeadlineExceeded", "The RayJob has passed the preRunningDeadlineSeconds"),
        ({"jobDeploymentStatus": "ValidationFailed"}, "ValidationFailed", "The RayJob spec is invalid: preRunningDeadlineSeconds"),
    ],
    ids=["failed", "prerunning-deadline", "validation-failed"],
)
def test_wait_stops_on_every_terminal_failure(tools, tmp_path, final, reason, message):
    proc, state = wait_with(tmp_path, [{"jobDeploymentStatus": "Initializing"}, {**final, "reason": reason, "message": message}])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"jobDeploymentStatus={final['jobDeploymentStatus']}" in proc.stderr
    assert f"reason:  {reason}" in proc.stderr and message in proc.stderr
    assert state["polls"] <= 3, "it kept polling after a terminal state"


def test_wait_goes_on_through_retrying(tools, tmp_path):
    proc, state = wait_with(
        tmp_path,
        [{"jobDeploymentStatus": "Running"}, {"jobDeploymentStatus": "Retrying"}, {"jobDeploymentStatus": "Running"},
         {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deployment=Retrying" in proc.stdout and state["polls"] >= 4


def test_redeploy_by_name_replaces_the_old_object(tools, tmp_path):
    proc, state = wait_with(tmp_path, [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}], exists=True)
    assert proc.returncode == 0, proc.stderr
    assert state["deleted"] == ["mnist-train-20261126-140000"]


def test_no_cluster_exits_3(tools, tmp_path):
    proc, _ = wait_with(tmp_path, [], crd=False)
    assert proc.returncode == 3
    assert "KubeRay operator" in proc.stderr


# --------------------------------------------------------------------------- trust checks

RUNNING = [{"jobDeploymentStatus": "Initializing"}, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
           {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]


def test_head_with_token_auth_passes_the_check(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"head pod {head_pod()['name']} runs with Ray token authentication" in proc.stdout
    # it asked for this RayJob's head by the chart's label and KubeRay's node type
    assert state["pod_queries"][0] == {"kuberay-mnist/rayjob": NAME, "ray.io/node-type": "head"}
    assert state["deleted"] == []


@pytest.mark.parametrize("auth_mode", [None, "disabled"], ids=["unset", "disabled"])
def test_head_without_token_auth_is_refused(tools, tmp_path, auth_mode):
    proc, state = wait_with(tmp_path, RUNNING, pods=[head_pod(auth_mode)])
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"head pod {head_pod()['name']} (Running) runs without Ray token authentication" in proc.stderr
    assert f"RAY_AUTH_MODE={auth_mode or '<unset>'}" in proc.stderr
    assert state["deleted"] == [NAME], "the unauthenticated cluster must not stay up"
    assert "SUCCEEDED" not in proc.stdout


def test_auth_is_checked_only_once_the_head_runs(tools, tmp_path):
    """A Pending head (no env decided yet) is not judged; the check waits for Running."""
    proc, state = wait_with(tmp_path, RUNNING, pods=[head_pod(None, phase="Pending")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "token authentication" not in proc.stdout + proc.stderr
    assert len(state["pod_queries"]) >= 3


def test_production_profile_refuses_development_credentials(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING, "--profile", "gpu", secrets={S3_SECRET: DEV_MARK, MLFLOW_SECRET: {}})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"refusing Secret {S3_SECRET}: it holds development credentials" in proc.stderr
    assert "profile gpu" in proc.stderr
    assert state["applied"] == [], "nothing may be applied with development credentials"


def test_kind_profile_may_use_development_credentials(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING, "--profile", "cpu-kind", secrets={S3_SECRET: DEV_MARK, MLFLOW_SECRET: {}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (applied,) = state["applied"]
    rayjob = one([d for d in yaml.safe_load_all(applied) if d], "RayJob")
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert mounted_secrets(head, head["spec"]["containers"][0]) == {
        S3_SECRET, MLFLOW_SECRET}, "the training user's S3 keys and MLflow user; never the root keys"


def test_production_profile_with_real_credentials(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING, "--profile", "gpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(state["applied"]) == 1


def test_missing_credentials_secret_exits_3(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING, secrets={MLFLOW_SECRET: {}})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"Secret {S3_SECRET} not found in namespace mnist" in proc.stderr
    assert state["applied"] == []


def test_missing_mlflow_user_secret_exits_3(tools, tmp_path):
    proc, state = wait_with(tmp_path, RUNNING, secrets={S3_SECRET: {}})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"Secret {MLFLOW_SECRET} not found in namespace mnist" in proc.stderr
    assert state["applied"] == []
