"""Training runs against real services: the S3 + MLflow + Ray stack, `mnist-job train` processes
followed line by line, and what a finished run must hold in MLflow.

Used by tests/cluster (one run, then checks of what MLflow holds) and tests/faults (faults
injected while runs go on).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopback import services
from loopback.polling import wait_until

# The metrics the package logs to MLflow once per epoch (mnist_job/training/loop.py).
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "images_per_s", "epoch_time_s")
ARTIFACT_BUCKET = "mlflow-artifacts"
CHECKPOINT_BUCKET = "ray-checkpoints"


@dataclass
class Stack:
    root: Path
    s3: services.S3Server
    mlflow: services.MlflowServer
    ray: services.RayCluster

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow.uri)

    def env(self, s3_credentials: bool = True, **extra: str) -> dict[str, str]:
        """The driver's environment: the services' addresses; with ``s3_credentials``, as from a Secret."""
        s3 = self.s3.env() if s3_credentials else {}
        return services.base_env(**s3, MLFLOW_TRACKING_URI=self.mlflow.uri, RAY_ADDRESS=self.ray.address,
                                 RAY_AUTH_MODE="disabled", MNIST_PROJECT_DIR=str(services.PROJECT_DIR), **extra)


@contextlib.contextmanager
def running_stack(root: Path, buckets: tuple[str, ...] = (), nodes_get_s3_credentials: bool = False) -> Iterator[Stack]:
    """S3 (moto) with ``buckets`` and the MLflow artifact bucket, an MLflow server storing artifacts there,
    and a Ray cluster of a head without CPUs and two 1-CPU worker nodes; all stopped on exit."""
    s3 = services.start_s3(root / "logs")
    mlflow = cluster = None
    try:
        s3.create_buckets(ARTIFACT_BUCKET, *buckets)
        mlflow = services.start_mlflow(root / "logs", root / "mlflow", s3=s3, bucket=ARTIFACT_BUCKET)
        cluster = services.start_ray_cluster(root / "ray", head_cpus=0, worker_cpus=[1, 1],
                                             env=s3.env() if nodes_get_s3_credentials else None)
        yield Stack(root, s3, mlflow, cluster)
    finally:
        for service in (cluster, mlflow):
            if service:
                service.stop()
        s3.process.stop()


class Training:
    """A `mnist-job train` process whose output is followed line by line from its log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str], cwd: Path):
        self.log = log
        handle = self.log.open("w")
        self.popen = subprocess.Popen([sys.executable, "-m", "mnist_job", "train", *args], stdout=handle,
                                      stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        handle.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_running(self, before: str) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"training exited ({self.popen.returncode}) before {before}:\n{self.text()[-3000:]}")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        def probe():
            match = re.search(pattern, self.text())
            if not match:
                self.assert_running(f"/{pattern}/")
            return match

        return wait_until(probe, timeout, lambda: f"no /{pattern}/ within {timeout} s:\n{self.text()[-3000:]}")

    def finish(self, timeout: float = 600) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"training did not finish within {timeout} s:\n{self.text()[-3000:]}") from None


def wait_checkpoint_registered(s3: services.S3Server, bucket: str, key: str, training: Training,
                               timeout: float = 120) -> None:
    """Until Ray Train's controller has recorded a checkpoint in S3 (``key``: the run's
    checkpoint_manager_snapshot.json). It polls workers every 2 s; a worker killed before that
    poll takes its last report with it, and the epoch is redone."""
    client = s3.client()

    def probe() -> bool:
        try:
            if "checkpoint_20" in client.get_object(Bucket=bucket, Key=key)["Body"].read().decode():
                return True
        except client.exceptions.NoSuchKey:
            pass
        training.assert_running("its first checkpoint")
        return False

    wait_until(probe, timeout, f"no checkpoint recorded in s3://{bucket}/{key} within {timeout} s")


def epoch_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def assert_one_value_per_epoch(client, run_id: str, epochs: int) -> None:
    """Every per-epoch metric was logged exactly once for each epoch 1..epochs."""
    for key in EPOCH_METRICS:
        steps = epoch_steps(client, run_id, key)
        assert steps == list(range(1, epochs + 1)), f"{key}: expected one value per epoch 1..{epochs}, got steps {steps}"


def run_of(client, name: str, experiment: str = "mnist"):
    """The one MLflow run of the experiment whose Ray run name is ``name``."""
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`ray.run_name` = '{name}'")
    assert len(runs) == 1, f"expected one MLflow run named {name}, found {len(runs)}"
    return runs[0]
