"""scripts/deploy-rayjob.sh and scripts/deploy-rayservice.sh against the real API server and KubeRay operator:
their refusals and failure exits. No training runs here: the objects are deployed with an image the node
agent cannot pull (tests/support/node_agent/images.py), so their pods stay Pending and cost nothing, and each
test deletes what it applied. Success paths: test_rayjob.py and test_rayservice.py."""

from __future__ import annotations

import contextlib

import pytest

from loopback.polling import wait_until
from tests.support.local_cluster import NAMESPACE, PLATFORM_RELEASE

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

UNPULLABLE = "example.invalid/unpullable"  # --image: every pod of the deployment waits in ErrImagePull
RUNNABLE = "kuberay-mnist:dev-cpu"  # an image the node agent runs (its host commands stand for the image's)
S3_SECRET = f"{PLATFORM_RELEASE}-s3-training"  # the training user's keys, which the Ray pods mount
DEV_MARK = "kuberay-mnist/development-credentials"  # the platform's values-dev.yaml annotation


def deploy(cluster, script: str, *args: str, timeout_s: int = 5, **env: str):
    """The script itself (make would turn its exit code into 2), polling every second."""
    return cluster.run("bash", f"scripts/{script}", *args, timeout=180, check=False,
                       TIMEOUT_S=str(timeout_s), POLL_S="1", **env)


def output(done) -> str:
    return f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def exists(cluster, kind: str, name: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", NAMESPACE, check=False).returncode == 0


def gone(cluster, kind: str, name: str) -> bool:
    return wait_until(lambda: not exists(cluster, kind, name), 60, f"{kind} {name} was not deleted", interval=1)


def remove(cluster, kind: str, name: str) -> None:
    """The deployment's object and its NetworkPolicies (named <name>-...), so no later test sees them."""
    cluster.kubectl("delete", kind, name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=120)
    policies = [p["metadata"]["name"] for p in cluster.items("networkpolicies", "-n", NAMESPACE)]
    mine = [f"networkpolicy/{p}" for p in policies if p.startswith(f"{name}-")]
    if mine:
        cluster.kubectl("delete", *mine, "-n", NAMESPACE, "--ignore-not-found")


@contextlib.contextmanager
def deployed(cluster, kind: str, name: str):
    try:
        yield name
    finally:
        remove(cluster, kind, name)


@contextlib.contextmanager
def decoy_head(cluster, of: str, image: str, env: dict[str, str]):
    """A pod labelled as the head of deployment `of` the way the scripts find it (deploy-common.sh,
    check_head_auth), with `env` instead of what KubeRay sets: the chart cannot render a head without token
    auth, so this is how a head that lost it reaches the scripts. No ray.io/cluster label: the operator
    ignores it."""
    name = f"{of}-decoy-head"
    cluster.kubectl("run", name, "-n", NAMESPACE, f"--image={image}", "--restart=Never",
                    f"--labels=kuberay-mnist/rayjob={of},ray.io/node-type=head",
                    *[f"--env={k}={v}" for k, v in env.items()], "--command", "--", "sleep", "600")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=120)


def running(cluster, pod: str) -> None:
    wait_until(lambda: cluster.get("pod", pod, "-n", NAMESPACE).get("status", {}).get("phase") == "Running", 90,
               lambda: f"decoy {pod} not Running\n{cluster.diagnostics()}", interval=1)


def uid(cluster, name: str) -> str:
    return cluster.get("rayjob", name, "-n", NAMESPACE)["metadata"]["uid"]


def dev_mark(cluster) -> str | None:
    return cluster.get("secret", S3_SECRET, "-n", NAMESPACE)["metadata"].get("annotations", {}).get(DEV_MARK)


@contextlib.contextmanager
def marked_as_development_credentials(cluster):
    """The training Secret annotated as the dev platform's own Secret is; the annotation it had comes back."""
    before = dev_mark(cluster)
    cluster.kubectl("annotate", "--overwrite", "secret", S3_SECRET, "-n", NAMESPACE, f"{DEV_MARK}=true")
    try:
        yield
    finally:
        restore = f"{DEV_MARK}={before}" if before is not None else f"{DEV_MARK}-"
        cluster.kubectl("annotate", "--overwrite", "secret", S3_SECRET, "-n", NAMESPACE, restore)


def test_development_credentials_are_refused_on_the_gpu_profile_and_allowed_on_kind(cluster):
    before = dev_mark(cluster)
    with marked_as_development_credentials(cluster):
        for script in ("deploy-rayjob.sh", "deploy-rayservice.sh"):
            done = deploy(cluster, script, "--profile", "gpu", "--name", "deploy-test-devcreds")
            assert done.returncode == 4, output(done)
            assert f"refusing Secret {S3_SECRET}: it holds development credentials" in done.stderr, output(done)
            assert "profile gpu" in done.stderr
        for kind in ("rayjob", "rayservice"):
            assert not exists(cluster, kind, "deploy-test-devcreds"), f"a {kind} was applied with development credentials"
        with deployed(cluster, "rayjob", "deploy-test-devcreds-kind") as name:
            done = deploy(cluster, "deploy-rayjob.sh", "--profile", "cpu-kind", "--image", UNPULLABLE, "--name", name,
                          timeout_s=2)
            assert done.returncode == 1 and "not finished after --timeout 2 s" in done.stdout, output(done)
            assert exists(cluster, "rayjob", name), "cpu-kind may use development credentials: it applied"
    assert dev_mark(cluster) == before, "the annotation was not restored"


def test_a_missing_training_credentials_secret_exits_3_naming_it(cluster):
    done = deploy(cluster, "deploy-rayjob.sh", "--name", "deploy-test-nosecret", "--",
                  "--set-string", "platform.credentialsSecret=deploy-test-no-such-secret")
    assert done.returncode == 3, output(done)
    assert f"Secret deploy-test-no-such-secret not found in namespace {NAMESPACE}" in done.stderr, output(done)
    assert not exists(cluster, "rayjob", "deploy-test-nosecret")


def test_the_gpu_profile_applies_and_fails_at_its_pre_running_deadline_then_redeploys_by_name(cluster):
    """One RayJob proves three claims: the production profile applies with the platform's real (unmarked)
    credentials; a job whose pods never start ends with KubeRay's reason and the first cause (exit 1, told by
    `mnist-job submit`, which the script runs); the same --name again replaces it. A head that never runs is
    not judged for its token authentication (test_submit.py refuses one that runs without it)."""
    assert dev_mark(cluster) is None, "the platform's training Secret is not marked as development credentials"
    args = ("--profile", "gpu", "--image", UNPULLABLE, "--name", "deploy-test-deadline")
    with deployed(cluster, "rayjob", "deploy-test-deadline") as name:
        done = deploy(cluster, "deploy-rayjob.sh", *args, "--", "--set", "lifecycle.preRunningDeadlineSeconds=3",
                      timeout_s=90)
        assert done.returncode == 1, output(done)
        assert f"RayJob {NAMESPACE}/{name}: FAILED (deployment=Failed" in done.stdout, output(done)
        assert "reason=PreRunningDeadlineExceeded" in done.stdout, output(done)
        assert f"cause: image {UNPULLABLE}:" in done.stdout and "cannot be pulled" in done.stdout, output(done)
        assert "token authentication" not in done.stdout + done.stderr, "a head that never ran was judged"
        first = uid(cluster, name)
        again = deploy(cluster, "deploy-rayjob.sh", *args, timeout_s=1)
        assert f"deleting the previous RayJob {name}" in again.stdout, output(again)
        assert again.returncode == 1, output(again)
        assert uid(cluster, name) != first, "the redeployed RayJob is a new object"


def test_a_rayservice_times_out_then_is_deleted_when_its_head_runs_without_token_auth(cluster):
    args = ("--image", UNPULLABLE, "--name", "deploy-test-serve")
    with deployed(cluster, "rayservice", "deploy-test-serve") as name:
        done = deploy(cluster, "deploy-rayservice.sh", *args, timeout_s=2)
        assert done.returncode == 1, output(done)
        assert f"RayService {name} was not ready after 2s: ready=" in done.stderr, output(done)
        assert exists(cluster, "rayservice", name), "a timed-out RayService stays deployed"
        with decoy_head(cluster, name, RUNNABLE, {"RAY_AUTH_MODE": "disabled"}) as pod:
            running(cluster, pod)
            done = deploy(cluster, "deploy-rayservice.sh", *args, timeout_s=60)
            assert done.returncode == 4, output(done)
            assert "runs without Ray token authentication (RAY_AUTH_MODE=disabled" in done.stderr, output(done)
            assert f"deleting RayService {name}" in done.stderr
            assert gone(cluster, "rayservice", name)
