"""`mnist-job submit` on the real stack: the user's manifest applied through the API server, followed to its end,
its exit code the job's result, and each failure's first cause in plain words (mnist_job/cluster/).

Each case is k8s/rayjob-cpu-kind.yaml under its own name with one change that makes the failure happen for real
(the scheduler, the node agent's image pull, KubeRay's deadline, the driver itself); each RayJob is deleted after
its test, so its pods free the node."""

from __future__ import annotations

import pytest

from tests.support.local_cluster import NAMESPACE, edited_manifest

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

STATIC = "k8s/rayjob-cpu-kind.yaml"


def renamed(name: str, change=None):
    def edit(rayjob: dict) -> None:
        rayjob["metadata"]["name"] = name
        if change:
            change(rayjob)
    return edit


def head(rayjob: dict) -> dict:
    return rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def submit(cluster, tmp_path, name: str, change=None, *flags: str, timeout: float = 900):
    path, _ = edited_manifest(STATIC, renamed(name, change), tmp_path)
    try:
        done = cluster.run("mnist-job", "submit", "-f", str(path), "--wait", *flags, timeout=timeout, check=False)
        print(f"\n$ mnist-job submit -f <{name}> --wait {' '.join(flags)}: exit {done.returncode}\n"
              + "\n".join(said(done).splitlines()[-4:]))
        return done
    finally:
        cluster.kubectl("delete", "rayjob", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def said(done) -> str:
    return done.stdout + done.stderr


SMALL = (" --set train.run_name=mnist-submit-ok --set data.train_subset=2000 --set data.validation_size=500"
         " --set data.test_subset=500 --set mlflow.register_min_accuracy=1.0")  # a short run, not registered


def test_a_job_that_trains_exits_0_with_the_drivers_lines(cluster, tmp_path):
    def small(rayjob):
        rayjob["spec"]["entrypoint"] += SMALL

    done = submit(cluster, tmp_path, "mnist-submit-ok", small)
    out = said(done)
    assert done.returncode == 0, out[-4000:]
    assert "submitted to https://" in out and "rayjob/mnist-submit-ok" in out
    assert "test accuracy" in out and "run id: " in out, "the driver's lines, followed from the submitter's logs"
    assert "RayJob mnist/mnist-submit-ok: SUCCEEDED (deployment=Complete job=SUCCEEDED" in out


def test_an_image_the_node_cannot_pull_is_named(cluster, tmp_path):
    def unpullable(rayjob):
        head(rayjob)["image"] = "example.invalid/unpullable:1"

    done = submit(cluster, tmp_path, "mnist-submit-image", unpullable, "--stuck-after", "15", timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cause: image example.invalid/unpullable:1 cannot be pulled" in done.stdout, said(done)[-3000:]
    assert "ErrImagePull" in done.stdout


def test_a_pod_no_node_can_hold_is_named_with_the_schedulers_words(cluster, tmp_path):
    def too_big(rayjob):
        head(rayjob)["resources"]["requests"]["cpu"] = "64"
        head(rayjob)["resources"]["limits"]["cpu"] = "64"

    done = submit(cluster, tmp_path, "mnist-submit-cpu", too_big, "--stuck-after", "15", timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cannot be scheduled: 0/1 nodes are available" in done.stdout and "Insufficient cpu" in done.stdout, \
        said(done)[-3000:]


def test_a_driver_that_fails_exits_1_with_its_own_error(cluster, tmp_path):
    def bad_epochs(rayjob):
        rayjob["spec"]["entrypoint"] += " --set train.epochs=0"

    done = submit(cluster, tmp_path, "mnist-submit-driver", bad_epochs, timeout=600)
    assert done.returncode == 1, said(done)[-3000:]
    assert "FAILED (deployment=" in done.stdout and "job=FAILED" in done.stdout, said(done)[-3000:]
    assert "cause: the driver failed" in done.stdout and "train.epochs" in done.stdout, said(done)[-3000:]


def test_a_passed_deadline_is_named(cluster, tmp_path):
    def short(rayjob):
        rayjob["spec"]["activeDeadlineSeconds"] = 20

    done = submit(cluster, tmp_path, "mnist-submit-deadline", short, timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cause: the RayJob's activeDeadlineSeconds (20 s) passed" in done.stdout, said(done)[-3000:]


def test_status_and_logs_of_a_job_submitted_before(cluster, tmp_path):
    path, _ = edited_manifest(STATIC, renamed("mnist-submit-later"), tmp_path)
    try:
        done = cluster.run("mnist-job", "submit", "-f", str(path), "--no-wait")
        assert "follow it with: mnist-job status mnist-submit-later -n mnist" in done.stdout
        again = cluster.run("mnist-job", "submit", "-f", str(path), "--no-wait", check=False)
        assert again.returncode == 2 and "exists already" in again.stderr, said(again)
        status = cluster.run("mnist-job", "status", "mnist-submit-later", "-n", NAMESPACE)
        assert "RayJob mnist/mnist-submit-later: running" in status.stdout, said(status)
        logs = cluster.run("mnist-job", "logs", "mnist-submit-later", "-n", NAMESPACE)
        assert logs.returncode == 0
    finally:
        cluster.kubectl("delete", "rayjob", "mnist-submit-later", "-n", NAMESPACE, "--wait=false", check=False)
    missing = cluster.run("mnist-job", "status", "no-such-job", "-n", NAMESPACE, check=False)
    assert missing.returncode == 2 and "no RayJob no-such-job" in missing.stderr


def test_an_unreachable_api_server_exits_3_naming_it(cluster, tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(cluster.kubeconfig.read_text().replace(cluster.server_url(), "https://127.0.0.1:1"))
    path, _ = edited_manifest(STATIC, renamed("mnist-submit-nowhere"), tmp_path)
    done = cluster.run("mnist-job", "submit", "-f", str(path), "--wait", check=False, KUBECONFIG=str(config))
    assert done.returncode == 3 and "https://127.0.0.1:1 is unreachable" in done.stderr, said(done)
