"""Runs in which a rank would get no data are refused by the driver before Ray starts (exit 2).

Inside the workers a batch larger than a rank's shard failed only after the cluster was up (exit 1),
and a rank without validation images left the others waiting for its share of the all-reduce.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from loopback import services


@pytest.mark.parametrize(("sets", "field"), [
    (["train.batch_size=4096", "data.train_subset=3000", "data.validation_size=1000"], "train.batch_size"),
    (["train.num_workers=4", "data.validation_size=3"], "data.validation_size"),
])
def test_the_driver_refuses_a_rank_without_data_before_ray(prepared_dataset, tmp_path, sets, field):
    env = services.base_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            MNIST_PROJECT_DIR=str(services.PROJECT_DIR))
    args = [sys.executable, "-m", "mnist_job", "train", "--set", f"train.storage_path={tmp_path / 'ray'}",
            "--set", f"train.output_dir={tmp_path / 'outputs'}"]
    for item in sets:
        args += ["--set", item]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert field in done.stderr and "Traceback" not in done.stderr
    assert "Ray" not in done.stdout and not (tmp_path / "ray").exists(), "refused before Ray started"


def test_a_cluster_too_small_for_the_workers_is_refused_after_ray_starts_and_leaves_no_run(prepared_dataset, tmp_path):
    """The MLflow store gets ready while Ray starts (mnist_job/training/driver.py), but the run is created only
    once the cluster is known to fit the workers: a refusal there leaves no run behind."""
    from mnist_job.tracking.client import mlflow_client

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = services.base_env(MLFLOW_TRACKING_URI=tracking_uri, MNIST_PROJECT_DIR=str(services.PROJECT_DIR))
    done = subprocess.run([sys.executable, "-m", "mnist_job", "train", "--set", f"train.storage_path={tmp_path / 'ray'}",
                           "--set", f"train.output_dir={tmp_path / 'outputs'}", "--set", "train.cpus_per_worker=256"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "train.num_workers: 2 workers x 256 CPUs exceed the" in done.stderr and "Traceback" not in done.stderr
    client = mlflow_client(tracking_uri)
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name == "mnist"], "the store was readied meanwhile"
    assert not client.search_runs([e.experiment_id for e in experiments]), "no run for a cluster that cannot run it"
