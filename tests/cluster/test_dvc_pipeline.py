"""`dvc repro` runs the pipeline; a second run changes nothing; `dvc metrics show` prints the test accuracy.

Runs on a copy of the project (DVC metadata, the stages' code dependencies, the fetched and
prepared data) with small training params, on the embedded defaults: a local Ray, SQLite MLflow.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from loopback.services import PROJECT_DIR, VENV_BIN, base_env
from tests.support.dvc import copy_dvc_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project_copy(tmp_path, prepared_dataset):
    copy = copy_dvc_project(tmp_path / "project")
    shutil.copytree(PROJECT_DIR / "mnist_job", copy / "mnist_job", ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("data/raw", "data/mnist"):
        shutil.copytree(PROJECT_DIR / rel, copy / rel)
    (copy / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["train"].update(epochs=1, num_workers=1)
    params["data"].update(train_subset=4000, validation_size=1000, test_subset=1000)
    params["mlflow"]["register_min_accuracy"] = 0.5
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the copy's DVC cache is empty: record the copied data in it, as `dvc repro prepare` did in the repo
    dvc(copy, "commit", "--force", "fetch", "prepare")
    return copy


def dvc(copy, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=copy, capture_output=True, text=True, timeout=900,
                          env=base_env(MNIST_PROJECT_DIR=str(copy)))
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_repro_runs_then_changes_nothing_and_shows_metrics(project_copy):
    first = dvc(project_copy, "repro")
    out = first.stdout + first.stderr
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'fetch'" not in out  # data unchanged: DVC reuses it
    assert "test accuracy:" in out
    lock_after_first = (project_copy / "dvc.lock").read_text()
    assert "evaluate:" in lock_after_first

    second = dvc(project_copy, "repro")
    assert "Data and pipelines are up to date" in second.stdout
    assert (project_copy / "dvc.lock").read_text() == lock_after_first

    metrics = dvc(project_copy, "metrics", "show").stdout
    assert "test_accuracy" in metrics
