"""The per-epoch logger tells an outage (buffer, retry) from a refusal (fail at once, name it).

Outages are exercised against a stopped `mlflow server` in tests/faults; here a real MLflow store
refuses: the run was deleted while training.
"""

from __future__ import annotations

import time

import pytest

from mnist_job.core.errors import JobError
from mnist_job.tracking import runs as tracking


@pytest.fixture()
def client(tmp_path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_deleted_run_fails_at_once_with_its_reason(client, tmp_path, caplog):
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment)
    caplog.set_level("INFO", logger="mnist_job")
    logger = tracking.EpochMetricsLogger(client, run.info.run_id)
    assert logger.log(1, {"val_accuracy": 0.9, "train_loss": 0.3})
    client.delete_run(run.info.run_id)
    started = time.monotonic()
    with pytest.raises(JobError) as caught:
        logger.log(2, {"val_accuracy": 0.95, "train_loss": 0.2})
    assert time.monotonic() - started < 10, "a refusal is not retried"  # correctness: no retry loop, not speed
    message = str(caught.value)
    assert run.info.run_id in message and "not retrying" in message
    assert not any("unreachable" in line for line in caplog.messages), "a refusal is not reported as an outage"


def test_a_refusal_ends_the_final_logging_retries_at_once(client, tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode

    calls = []

    def refused():
        calls.append(1)
        raise MlflowException("run is deleted", error_code=ErrorCode.Value("INVALID_PARAMETER_VALUE"))

    with pytest.raises(JobError, match="INVALID_PARAMETER_VALUE"):
        tracking.retry(refused, "log the final model", timeout=5)
    assert calls == [1]


@pytest.mark.parametrize(("code", "permanent"), [("INVALID_PARAMETER_VALUE", True), ("RESOURCE_DOES_NOT_EXIST", True),
                                                 ("PERMISSION_DENIED", True), ("INTERNAL_ERROR", False),
                                                 ("TEMPORARILY_UNAVAILABLE", False)])
def test_refusals_and_outages_are_told_apart_by_status(code, permanent):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode

    assert tracking.is_permanent(MlflowException("x", error_code=ErrorCode.Value(code))) is permanent
    assert tracking.is_permanent(ConnectionError("refused")) is False
