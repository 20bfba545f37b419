"""A shared stack for fault tests: S3 (moto), an MLflow server with S3 artifacts, a 3-node Ray cluster
(tests/support/training.py). Every node gets the S3 endpoint and credentials, as every pod does from
the charts: Ray Train's controller and workers write checkpoints to S3 from their own processes.

Training runs are real `mnist-job train` processes driven against that stack; the tests
inject faults on real processes (SIGKILL by PID, stopping the MLflow server) while they run.
"""

from __future__ import annotations

import pytest

from tests.support.training import CHECKPOINT_BUCKET, running_stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory, prepared_dataset):
    root = tmp_path_factory.mktemp("faults")
    try:
        with running_stack(root, buckets=(CHECKPOINT_BUCKET,), nodes_get_s3_credentials=True) as running:
            yield running
    finally:
        print(f"fault-test logs: {root / 'logs'}")
