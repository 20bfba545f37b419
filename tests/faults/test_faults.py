"""Faults injected on real processes while `mnist-job train` runs: the job keeps its promises.

Every test also checks that the S3 secret from the environment appears nowhere: not in the
job's output, not in the MLflow run's params or tags.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from loopback import services
from tests.support.training import (
    CHECKPOINT_BUCKET,
    Training,
    assert_one_value_per_epoch,
    run_of,
    wait_checkpoint_registered,
)

pytestmark = pytest.mark.slow


def train(stack, run_name: str, epochs: int, *extra: str) -> Training:
    """`mnist-job train` on the stack: 2 workers, a small subset, checkpoints in S3."""
    args = ["--run-name", run_name, "--epochs", str(epochs), "--num-workers", "2", "--train-subset", "7000",
            "--test-subset", "1000", "--set", "data.validation_size=1000", "--set", "mlflow.register_min_accuracy=0.5",
            "--set", f"train.storage_path=s3://{CHECKPOINT_BUCKET}/faults",
            "--set", f"train.output_dir={stack.root / 'outputs' / run_name}", *extra]
    log = stack.root / f"{run_name}-{time.monotonic_ns()}.log"
    return Training(args, log, stack.env(), stack.root)


def wait_first_checkpoint(stack, run_name: str, training: Training) -> None:
    wait_checkpoint_registered(stack.s3, CHECKPOINT_BUCKET, f"faults/{run_name}/checkpoint_manager_snapshot.json", training)


def assert_complete_run(stack, name: str, epochs: int, output: str):
    client = stack.client()
    run = run_of(client, name)
    assert_one_value_per_epoch(client, run.info.run_id, epochs)
    assert run.info.status == "FINISHED"
    assert "test_accuracy" in run.data.metrics
    assert run.data.tags.get("final.logged") == "true"
    secret = services.TEST_SECRET_KEY
    assert secret not in output
    assert all(secret not in v for v in (*run.data.params.values(), *run.data.tags.values()))
    return run


def test_worker_killed_mid_epoch_restores_from_s3_checkpoint(stack):
    """SIGKILL rank 0 during epoch 2: Ray Train restarts the group from the epoch-1 checkpoint in S3."""
    training = train(stack, "fault-worker-kill", 3, "--max-failures", "2", "--verbose")  # Ray's lines name the pid
    pid = int(training.wait_for(r"RayTrainWorker pid=(\d+)\)\S* \[rank 0\] epoch 1/3", 400).group(1))
    wait_first_checkpoint(stack, "fault-worker-kill", training)
    assert "epoch 2/3" not in training.text()  # still inside epoch 2
    os.kill(pid, signal.SIGKILL)
    assert training.finish() == 0, training.text()[-3000:]
    output = training.text()
    assert "resumed from the checkpoint of epoch" in output
    run = assert_complete_run(stack, "fault-worker-kill", 3, output)
    keys = stack.s3.keys("ray-checkpoints", "faults/fault-worker-kill/")
    assert any(k.endswith("checkpoint.pt") for k in keys)
    assert run.data.tags["ray.storage_path"] == "s3://ray-checkpoints/faults"


def test_mlflow_server_down_for_30_s_loses_no_metric(stack):
    training = train(stack, "fault-mlflow-outage", 4)
    training.wait_for(r"(?m)^epoch 1/4 ", 400)
    stack.mlflow.stop()
    stopped = time.monotonic()
    try:
        training.wait_for(r"mlflow: server unreachable", 120)
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
    finally:
        stack.mlflow.restart()
    assert training.finish() == 0, training.text()[-3000:]
    output = training.text()
    assert "server back" in output
    assert_complete_run(stack, "fault-mlflow-outage", 4, output)


def test_driver_restart_resumes_and_never_trains_twice(stack):
    """The RayJob submitter retried: the same run name resumes; a finished name is refused."""
    first = train(stack, "fault-driver-restart", 3)
    first.wait_for(r"(?m)^epoch 1/3 ", 400)
    wait_first_checkpoint(stack, "fault-driver-restart", first)
    os.killpg(first.popen.pid, signal.SIGKILL)
    first.popen.wait()

    second = train(stack, "fault-driver-restart", 3)
    assert second.finish() == 0, second.text()[-3000:]
    output = second.text()
    assert "mlflow: resuming run" in output
    assert "resumed from the checkpoint of epoch" in output
    assert "epoch 1/3" not in output  # epoch 1 was not trained again
    assert_complete_run(stack, "fault-driver-restart", 3, first.text() + output)

    third = train(stack, "fault-driver-restart", 3)
    assert third.finish() == 2
    assert "already finished" in third.text() and "Traceback" not in third.text()


def test_sigterm_marks_the_run_killed_and_the_same_name_resumes_it(stack):
    """Kubernetes stops a pod with SIGTERM: the run must not stay RUNNING, and a later attempt resumes it."""
    first = train(stack, "fault-sigterm", 2)
    first.wait_for(r"(?m)^epoch 1/2 ", 400)
    wait_first_checkpoint(stack, "fault-sigterm", first)
    os.kill(first.popen.pid, signal.SIGTERM)  # the driver alone, as the kubelet signals a container's process
    assert first.finish(120) == 128 + signal.SIGTERM, first.text()[-3000:]
    output = first.text()
    assert "stopped by SIGTERM" in output and "marked KILLED" in output
    # the job's own lines carry no traceback; Ray's actors (lines tagged "(Name pid=N)") may print theirs
    # while the cluster disconnects from the stopped driver, which is Ray's business, not the job's
    assert "Traceback" not in "\n".join(line for line in output.splitlines() if " pid=" not in line)
    run = run_of(stack.client(), "fault-sigterm")
    assert run.info.status == "KILLED"
    assert run.data.tags["run.stopped_by"] == "SIGTERM during training"

    second = train(stack, "fault-sigterm", 2)
    assert second.finish() == 0, second.text()[-3000:]
    assert "mlflow: resuming run" in second.text()
    assert_complete_run(stack, "fault-sigterm", 2, output + second.text())

    # the resumed run repeats the uninterrupted one: weights, optimizer, schedule and every rank's
    # random numbers (dropout) come back from the checkpoint
    reference = train(stack, "fault-sigterm-reference", 2)
    assert reference.finish() == 0, reference.text()[-3000:]
    client = stack.client()
    resumed, uninterrupted = run_of(client, "fault-sigterm"), run_of(client, "fault-sigterm-reference")
    for key in ("train_loss", "val_loss", "val_accuracy"):
        a = [m.value for m in sorted(client.get_metric_history(resumed.info.run_id, key), key=lambda m: m.step)]
        b = [m.value for m in sorted(client.get_metric_history(uninterrupted.info.run_id, key), key=lambda m: m.step)]
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), (key, a, b)


def test_unreachable_mlflow_at_start_exits_3_before_any_work(tmp_path):
    env = services.base_env(MLFLOW_TRACKING_URI="http://127.0.0.1:9", MNIST_PROJECT_DIR=str(services.PROJECT_DIR))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mnist_job", "train", "--set",
                           f"train.storage_path={tmp_path / 'ray'}"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 3
    # Correctness, not speed: one health check, then exit 3, rather than MLflow's retries with backoff.
    assert time.monotonic() - started < 30
    assert "http://127.0.0.1:9" in done.stderr and "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Ray" not in done.stdout and not (tmp_path / "ray").exists()
