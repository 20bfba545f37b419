"""scripts/deploy-rayjob.sh without a cluster: one RayJob (and one run) per deployment as rendered,
its argument checks, and its exit when kubectl reaches no cluster.

What it does on a cluster (the wait on KubeRay's terminal states, the Secrets and token-auth checks):
tests/kubernetes/test_deploy_scripts.py, test_rayjob.py and test_platform.py, on the real API server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import yaml
from manifest_helpers import PLATFORM_RELEASE, ROOT, mounted_secrets, one, run

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


def test_no_cluster_exits_3(tools, no_cluster):
    proc = deploy(env=no_cluster)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot list RayJobs in namespace mnist: no cluster in the current kubectl context" in proc.stderr


def test_kind_profile_mounts_only_the_training_users_secrets(tools):
    """cpu-kind may run with the kind platform's development credentials (the object says so; the script then
    skips that refusal: tests/kubernetes/test_deploy_scripts.py), yet its pods mount only the training
    user's S3 keys and MLflow user, never the platform's root keys."""
    rayjob = render("--profile", "cpu-kind")
    assert rayjob["metadata"]["annotations"]["kuberay-mnist/development-credentials-allowed"] == "true"
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert mounted_secrets(head, head["spec"]["containers"][0]) == {
        f"{PLATFORM_RELEASE}-s3-training", f"{PLATFORM_RELEASE}-mlflow-training"}


def test_without_mnist_job_exits_3_before_applying(tools):
    """The script's waiting is `mnist-job submit`'s: without the package it stops before touching a cluster."""
    proc = deploy(env={"MNIST_JOB": "/nonexistent/mnist-job", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "deploy-rayjob: mnist-job not found: run make venv" in proc.stderr
