"""A real MLflow server per test module (loopback/services.py) and a client of it."""

from __future__ import annotations

import pytest

from loopback import services


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    server = services.start_mlflow(root / "logs", root / "store")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri)
