"""The platform chart's per-workload S3 policies, enforced for real: moto_server with IAM authorization on,
one IAM user per workload holding exactly the rendered policy document, every check an S3 call over HTTP."""

from __future__ import annotations

import json
import sys

import pytest
from manifest_helpers import PLATFORM, PLATFORM_RELEASE, ROOT, one

sys.path.insert(0, str(ROOT))
from tests.support.iam_s3 import start_iam_s3  # noqa: E402

pytestmark = pytest.mark.slow

BUCKETS = {"mlflowArtifacts": "acme-mlflow", "dvc": "acme-dvc", "checkpoints": "acme-checkpoints"}
DVC_PREFIX = "store"


@pytest.fixture(scope="module")
def policies(helm_template):
    sets = [a for role, bucket in BUCKETS.items() for a in ("--set", f"buckets.{role}={bucket}")]
    res = helm_template(PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / "values-dev.yaml"), *sets,
                        "--set", f"dvcPrefix={DVC_PREFIX}")
    assert res.returncode == 0, res.stderr
    data = one(res.docs, "ConfigMap", f"{PLATFORM_RELEASE}-s3-policies")["data"]
    assert set(data) == {"mlflow.json", "training.json"}
    return {name.removesuffix(".json"): json.loads(text) for name, text in data.items()}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_iam_s3(tmp_path_factory.mktemp("iam-s3") / "logs")
    try:
        admin = server.client("s3", server.admin_key)
        for bucket in BUCKETS.values():
            admin.create_bucket(Bucket=bucket)
        admin.put_object(Bucket=BUCKETS["dvc"], Key=f"{DVC_PREFIX}/files/md5/ab/cdef", Body=b"dataset")
        admin.put_object(Bucket=BUCKETS["mlflowArtifacts"], Key="1/models/m-1/artifacts/MLmodel", Body=b"model")
        yield server
    finally:
        server.process.stop()


def allowed(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response["Error"]
        return False


def test_a_key_whose_policy_names_other_buckets_is_refused(s3):
    """The enforcement is real: a user allowed only elsewhere reads nothing here (else every check below would pass)."""
    elsewhere = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::elsewhere/*"}]}
    nobody = s3.client("s3", s3.user("nobody", elsewhere))
    assert not allowed(lambda: nobody.get_object(Bucket=BUCKETS["dvc"], Key=f"{DVC_PREFIX}/files/md5/ab/cdef"))


def test_the_training_user_reads_the_dvc_remote_writes_checkpoints_and_nothing_else(s3, policies):
    training = s3.client("s3", s3.user("training", policies["training"]))
    dvc, checkpoints, mlflow = BUCKETS["dvc"], BUCKETS["checkpoints"], BUCKETS["mlflowArtifacts"]
    assert allowed(lambda: training.get_object(Bucket=dvc, Key=f"{DVC_PREFIX}/files/md5/ab/cdef"))
    assert allowed(lambda: training.list_objects_v2(Bucket=dvc, Prefix=f"{DVC_PREFIX}/"))
    assert not allowed(lambda: training.put_object(Bucket=dvc, Key=f"{DVC_PREFIX}/files/md5/ff/ffff", Body=b"x"))
    assert not allowed(lambda: training.delete_object(Bucket=dvc, Key=f"{DVC_PREFIX}/files/md5/ab/cdef"))
    key = "ray-results/run-1/checkpoint_000000/checkpoint.pt"
    assert allowed(lambda: training.put_object(Bucket=checkpoints, Key=key, Body=b"weights"))
    assert allowed(lambda: training.get_object(Bucket=checkpoints, Key=key))
    assert allowed(lambda: training.list_objects_v2(Bucket=checkpoints, Prefix="ray-results/"))
    assert allowed(lambda: training.delete_object(Bucket=checkpoints, Key=key))
    assert not allowed(lambda: training.get_object(Bucket=mlflow, Key="1/models/m-1/artifacts/MLmodel"))
    assert not allowed(lambda: training.list_objects_v2(Bucket=mlflow))
    assert not allowed(lambda: training.create_bucket(Bucket="training-made-this"))


def test_the_mlflow_user_owns_its_artifact_bucket_only(s3, policies):
    mlflow_user = s3.client("s3", s3.user("mlflow", policies["mlflow"]))
    mlflow = BUCKETS["mlflowArtifacts"]
    assert allowed(lambda: mlflow_user.put_object(Bucket=mlflow, Key="2/artifacts/plot.png", Body=b"png"))
    assert allowed(lambda: mlflow_user.get_object(Bucket=mlflow, Key="1/models/m-1/artifacts/MLmodel"))
    assert allowed(lambda: mlflow_user.list_objects_v2(Bucket=mlflow))
    assert allowed(lambda: mlflow_user.delete_object(Bucket=mlflow, Key="2/artifacts/plot.png"))
    for bucket in (BUCKETS["dvc"], BUCKETS["checkpoints"]):
        assert not allowed(lambda b=bucket: mlflow_user.list_objects_v2(Bucket=b))
        assert not allowed(lambda b=bucket: mlflow_user.put_object(Bucket=b, Key="x", Body=b"x"))
    assert not allowed(lambda: mlflow_user.get_object(Bucket=BUCKETS["dvc"], Key=f"{DVC_PREFIX}/files/md5/ab/cdef"))
