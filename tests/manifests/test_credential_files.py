"""The S3 credentials file the charts mount (AWS_SHARED_CREDENTIALS_FILE), read by each S3 client the pods run:
boto3 (the bucket job, the package), s3fs (DVC's remote), pyarrow's S3 filesystem (Ray Train's storage, through
the AWS C++ SDK) and the MLflow server's artifact store (boto3). Against moto_server with IAM enforced, so a
client that ignored the file, or read a wrong one, is refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from manifest_helpers import PLATFORM, PLATFORM_RELEASE, ROOT, one

sys.path.insert(0, str(ROOT))
from loopback import services  # noqa: E402
from tests.support.iam_s3 import start_iam_s3  # noqa: E402

pytestmark = pytest.mark.slow

BUCKET = "checkpoints-under-test"
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}

# Each client writes, lists and reads back one object with nothing but the environment to go on.
CLIENTS = r"""
import os, sys, urllib.parse
endpoint, bucket, which = sys.argv[1], sys.argv[2], sys.argv[3]
key = f"from-{which}/object.txt"
if which == "boto3":
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.put_object(Bucket=bucket, Key=key, Body=b"payload")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"payload"
elif which == "s3fs":
    import s3fs
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.pipe(f"{bucket}/{key}", b"payload")
    assert fs.cat(f"{bucket}/{key}") == b"payload"
elif which == "pyarrow":
    import pyarrow.fs
    # As Ray Train opens its storage_path: s3:// with the endpoint from AWS_ENDPOINT_URL.
    fs, path = pyarrow.fs.FileSystem.from_uri(f"s3://{bucket}/{key}")
    with fs.open_output_stream(path) as out:
        out.write(b"payload")
    with fs.open_input_stream(path) as stream:
        assert stream.read() == b"payload"
print("ok", which)
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_iam_s3(tmp_path_factory.mktemp("iam-s3") / "logs")
    try:
        server.client("s3", server.admin_key).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def rendered_file(helm_template):
    """(the rendered training Secret's `credentials` text, its key id, its secret key)."""
    res = helm_template(PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / "values-dev.yaml"))
    assert res.returncode == 0, res.stderr
    data = one(res.docs, "Secret", f"{PLATFORM_RELEASE}-s3-training")["stringData"]
    return data["credentials"], data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"]


def the_file_for(rendered_file, key: tuple[str, str]) -> str:
    """The chart's file, its pair replaced by a key moto issued (moto makes the keys, not the chart)."""
    text, key_id, secret = rendered_file
    assert text.count(key_id) == 1 and text.count(secret) == 1, text
    return text.replace(key_id, key[0]).replace(secret, key[1])


def run_client(s3, which: str, credentials_file, tmp_path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{services.VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": s3.endpoint,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
           # no instance metadata service here: fail at once instead of probing 169.254.169.254
           "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run([sys.executable, "-c", CLIENTS, s3.endpoint, BUCKET, which], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("which", ["boto3", "s3fs", "pyarrow"])
def test_each_s3_client_signs_with_the_mounted_file_only(s3, rendered_file, tmp_path, which):
    key = s3.user(f"file-user-{which}", POLICY)
    good = tmp_path / "good" / "credentials"
    good.parent.mkdir()
    good.write_text(the_file_for(rendered_file, key))
    good.chmod(0o440)  # the Secret volume's mode
    done = run_client(s3, which, good, tmp_path)
    assert done.returncode == 0 and f"ok {which}" in done.stdout, done.stdout + done.stderr[-3000:]
    listed = s3.client("s3", s3.admin_key).list_objects_v2(Bucket=BUCKET, Prefix=f"from-{which}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"from-{which}/object.txt"]

    wrong = tmp_path / "wrong" / "credentials"
    wrong.parent.mkdir()
    wrong.write_text(the_file_for(rendered_file, (key[0], key[1][::-1])))
    refused = run_client(s3, which, wrong, tmp_path)
    assert refused.returncode != 0 and f"ok {which}" not in refused.stdout, refused.stdout
    missing = run_client(s3, which, tmp_path / "no-such-file", tmp_path)
    assert missing.returncode != 0 and f"ok {which}" not in missing.stdout, missing.stdout


@pytest.mark.parametrize("user", ["training", "serving"])
def test_the_mlflow_user_file_is_what_mlflow_reads(helm_template, tmp_path, monkeypatch, user):
    """Each MLflow user Secret's `credentials` key, placed at ~/.mlflow/credentials as the RayJob chart mounts it
    (the training user's in the RayJob, the serving user's in the RayService), is what MLflow's client sends (a
    server round trip: tests/tracking/test_mlflow_auth.py)."""
    from mlflow.utils.credentials import read_mlflow_creds

    res = helm_template(PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / "values-dev.yaml"))
    data = one(res.docs, "Secret", f"{PLATFORM_RELEASE}-mlflow-{user}")["stringData"]
    assert data["MLFLOW_TRACKING_USERNAME"] == f"mnist-{user}"
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(data["credentials"])
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    creds = read_mlflow_creds()
    assert (creds.username, creds.password) == (data["MLFLOW_TRACKING_USERNAME"], data["MLFLOW_TRACKING_PASSWORD"])


def test_the_mlflow_server_auth_config_names_the_admin(helm_template):
    """The admin Secret's basic_auth.ini names the admin (no MLFLOW_AUTH_ADMIN_* env left to do it)."""
    import configparser

    res = helm_template(PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / "values-dev.yaml"))
    data = one(res.docs, "Secret", f"{PLATFORM_RELEASE}-mlflow-admin")["stringData"]
    ini = configparser.ConfigParser()
    ini.read_string(data["basic_auth.ini"])
    assert ini["mlflow"]["admin_username"] == data["username"]
    assert ini["mlflow"]["admin_password"] == data["password"]
