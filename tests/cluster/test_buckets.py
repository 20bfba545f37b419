"""`mnist-job ensure-buckets` (the platform's bucket Job): waits for the endpoint, then creates what is missing."""

from __future__ import annotations

import pytest

from loopback import services
from mnist_job.core.errors import ServiceUnavailable
from mnist_job.data.s3 import ensure_buckets


def test_buckets_are_created_once(s3, monkeypatch, caplog):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    caplog.set_level("INFO", logger="mnist_job")
    ensure_buckets(["ray-checkpoints", "dvc"], s3.endpoint, timeout=30)
    ensure_buckets(["ray-checkpoints"], s3.endpoint, timeout=30)
    assert caplog.messages == ["buckets: created ray-checkpoints", "buckets: created dvc", "buckets: ray-checkpoints exists"]


def test_an_endpoint_that_never_answers_is_named_after_the_timeout(monkeypatch, caplog):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", services.TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", services.TEST_SECRET_KEY)
    endpoint = f"http://127.0.0.1:{services.free_port()}"  # nothing listens there
    caplog.set_level("INFO", logger="mnist_job")
    with pytest.raises(ServiceUnavailable, match=f"S3 endpoint {endpoint} did not answer within 5 s"):
        ensure_buckets(["dvc"], endpoint, timeout=5)
    said = caplog.messages
    assert said and all(line.startswith(f"buckets: waiting for {endpoint}") for line in said), said
