"""A shared stack for fault tests: S3 (moto), an MLflow server with S3 artifacts, a 3-node Ray cluster.

Training runs are real `mnist-job train` processes driven against that stack; the tests
inject faults on real processes (SIGKILL by PID, stopping the MLflow server) while they run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import services

CHECKPOINT_BUCKET = "ray-checkpoints"
ARTIFACT_BUCKET = "mlflow-artifacts"


@dataclass
class Stack:
    root: Path
    s3: services.S3Server
    mlflow: services.MlflowServer
    ray: services.RayCluster

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow.uri)

    def env(self, **extra: str) -> dict[str, str]:
        # The cluster profile: checkpoints in S3, credentials in the environment (as from a Secret).
        return services.base_env(**self.s3.env(), MLFLOW_TRACKING_URI=self.mlflow.uri, RAY_ADDRESS=self.ray.address,
                                 RAY_AUTH_MODE="disabled", MNIST_PROJECT_DIR=str(services.PROJECT_DIR), **extra)


@pytest.fixture(scope="package")
def stack(tmp_path_factory, prepared_dataset):
    root = tmp_path_factory.mktemp("faults")
    s3 = services.start_s3(root / "logs")
    mlflow = cluster = None
    try:
        s3.create_buckets(CHECKPOINT_BUCKET, ARTIFACT_BUCKET)
        mlflow = services.start_mlflow(root / "logs", root / "mlflow", s3=s3, bucket=ARTIFACT_BUCKET)
        # Every node gets the S3 endpoint and credentials, as every pod does from the charts:
        # Ray Train's controller and workers write checkpoints from their own processes.
        cluster = services.start_ray_cluster(root / "ray", head_cpus=0, worker_cpus=[1, 1], env=s3.env())
        yield Stack(root, s3, mlflow, cluster)
    finally:
        for service in (cluster, mlflow):
            if service:
                service.stop()
        s3.process.stop()
        print(f"fault-test logs: {root / 'logs'}")


class Training:
    """A `mnist-job train` process whose output is followed line by line from its log file."""

    def __init__(self, stack: Stack, run_name: str, epochs: int, *extra: str, env: dict | None = None):
        self.log = stack.root / f"{run_name}-{time.monotonic_ns()}.log"
        args = [sys.executable, "-m", "mnist_job", "train", "--run-name", run_name, "--epochs", str(epochs),
                "--num-workers", "2", "--train-subset", "7000", "--test-subset", "1000",
                "--set", "data.validation_size=1000", "--set", "mlflow.register_min_accuracy=0.5",
                "--set", f"train.storage_path=s3://{CHECKPOINT_BUCKET}/faults",
                "--set", f"train.output_dir={stack.root / 'outputs' / run_name}", *extra]
        handle = self.log.open("w")
        self.popen = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env or stack.env(),
                                      cwd=stack.root, start_new_session=True)
        handle.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            if self.popen.poll() is not None:
                raise AssertionError(f"training exited ({self.popen.returncode}) before /{pattern}/:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no /{pattern}/ within {timeout} s:\n{self.text()[-3000:]}")

    def finish(self, timeout: float = 600) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"training did not finish within {timeout} s:\n{self.text()[-3000:]}") from None


def wait_checkpoint_registered(stack: Stack, run_name: str, training: Training, timeout: float = 120) -> None:
    """Until Ray Train's controller has recorded a checkpoint in S3 (it polls workers every 2 s;
    a worker killed before that poll takes its last report with it, and the epoch is redone)."""
    key = f"faults/{run_name}/checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + timeout
    client = stack.s3.client()
    while time.monotonic() < deadline:
        try:
            body = client.get_object(Bucket=CHECKPOINT_BUCKET, Key=key)["Body"].read().decode()
            if "checkpoint_20" in body:
                return
        except client.exceptions.NoSuchKey:
            pass
        if training.popen.poll() is not None:
            raise AssertionError(f"training exited before its first checkpoint:\n{training.text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint recorded in s3://{CHECKPOINT_BUCKET}/{key} within {timeout} s")


def epoch_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def run_of(client, name: str):
    experiment = client.get_experiment_by_name("mnist")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`ray.run_name` = '{name}'")
    assert len(runs) == 1, f"expected one MLflow run named {name}, found {len(runs)}"
    return runs[0]
