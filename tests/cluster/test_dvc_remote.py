"""DVC against a real S3 server: push, pull into an empty worker cache, once per node, refusals."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopback.services import base_env
from mnist_job.core.config import DataParams, Runtime
from mnist_job.core.errors import DataError, ServiceUnavailable
from mnist_job.data.dvc_store import ensure_dataset
from mnist_job.data.format import MANIFEST, verify_dataset
from tests.support.dvc import copy_dvc_project, push_dataset

REMOTE = "s3://dvc-test/dvcstore"


@pytest.fixture
def pushed(s3, tmp_path, prepared_dataset):
    s3.create_buckets("dvc-test")
    output = push_dataset(tmp_path / "push", REMOTE, s3.env())
    assert "pushed" in output.lower()
    keys = s3.keys("dvc-test", "dvcstore/")
    assert len(keys) >= 5, keys  # four arrays + manifest, content-addressed
    return s3


@pytest.fixture
def image_like_project(tmp_path):
    """What the image ships: DVC metadata and params, no data, no .git."""
    return copy_dvc_project(tmp_path / "app")


def _runtime(project: Path, cache: Path, remote: str, endpoint: str) -> Runtime:
    return Runtime(project_dir=project, data_cache=cache, dvc_remote_url=remote, s3_endpoint=endpoint)


def test_pull_into_an_empty_cache_then_reuse(pushed, image_like_project, tmp_path, monkeypatch, caplog):
    for key, value in pushed.env().items():
        monkeypatch.setenv(key, value)
    cache = tmp_path / "cache"
    caplog.set_level("INFO", logger="mnist_job")
    folder = ensure_dataset(DataParams(), _runtime(image_like_project, cache, REMOTE, pushed.endpoint))
    assert verify_dataset(folder)["class_counts"]["test"][0] == 980
    assert any("pulled data/mnist" in m for m in caplog.messages)
    assert (cache / "PULLED").is_file()
    assert not (image_like_project / "data").exists()  # the read-only project folder was not written

    caplog.clear()
    assert ensure_dataset(DataParams(), _runtime(image_like_project, cache, REMOTE, pushed.endpoint)) == folder
    assert any("pulled earlier" in m for m in caplog.messages)

    # a partial copy (a file lost) is not used: it is pulled again
    (folder / "test_images.npy").unlink()
    caplog.clear()
    ensure_dataset(DataParams(), _runtime(image_like_project, cache, REMOTE, pushed.endpoint))
    assert any("not usable" in m for m in caplog.messages) and any("pulled data/mnist" in m for m in caplog.messages)
    verify_dataset(folder)


def test_the_blurred_dataset_is_pulled_and_verified_like_the_main_one(s3, image_like_project, tmp_path, monkeypatch,
                                                                     caplog):
    """The `blurred` preset's dataset (dvc.yaml, prepare-blurred): pushed, then pulled into an empty worker cache."""
    s3.create_buckets("dvc-test")
    push_dataset(tmp_path / "push", REMOTE, s3.env(), data_dir="data/mnist-blurred")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    caplog.set_level("INFO", logger="mnist_job")
    data = DataParams(dir="data/mnist-blurred")
    folder = ensure_dataset(data, _runtime(image_like_project, tmp_path / "cache", REMOTE, s3.endpoint))
    manifest = verify_dataset(folder)  # every file against its SHA-256
    assert manifest["transform"].startswith("gaussian sigma 1 px")
    assert any("pulled data/mnist-blurred" in m for m in caplog.messages)
    (folder / "train_images.npy").write_bytes(b"\x93NUMPY tampered")  # a corrupt copy is pulled again
    caplog.clear()
    ensure_dataset(data, _runtime(image_like_project, tmp_path / "cache", REMOTE, s3.endpoint))
    assert any("not usable" in m for m in caplog.messages)
    verify_dataset(folder)


def test_concurrent_workers_on_one_node_pull_once(pushed, image_like_project, tmp_path):
    cache = tmp_path / "shared-cache"
    env = base_env(**pushed.env(), MNIST_DATA_CACHE=str(cache), MNIST_PROJECT_DIR=str(image_like_project),
                   MNIST_DVC_REMOTE_URL=REMOTE)
    procs = [subprocess.Popen([sys.executable, "-m", "mnist_job", "pull-data"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=image_like_project) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    joined = "\n".join(outputs)
    assert joined.count("pulled data/mnist") == 1, joined
    assert joined.count("pulled earlier") == 1, joined
    assert (cache / "dvc-workspace" / "data" / "mnist" / MANIFEST).is_file()


def test_missing_bucket_is_named(s3, image_like_project, tmp_path, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ServiceUnavailable) as info:
        ensure_dataset(DataParams(), _runtime(image_like_project, tmp_path / "c", "s3://no-such-bucket/x", s3.endpoint))
    assert "no-such-bucket" in str(info.value)


def test_unreachable_s3_endpoint_fails_fast_with_exit_3(image_like_project, tmp_path):
    env = base_env(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                   MNIST_DATA_CACHE=str(tmp_path / "c"), MNIST_PROJECT_DIR=str(image_like_project),
                   MNIST_DVC_REMOTE_URL=REMOTE)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mnist_job", "train", "--set",
                           "train.storage_path=s3://ray-checkpoints/x"], capture_output=True, text=True, env=env,
                          cwd=image_like_project, timeout=120)
    assert done.returncode == 3, done.stderr
    # Correctness, not speed: the job checks the endpoint once and gives up, where DVC's and boto's
    # retries with backoff would keep a pod busy for minutes.
    assert time.monotonic() - started < 30
    assert "127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr


def test_remote_missing_an_object_is_refused_and_nothing_half_pulled_is_kept(pushed, image_like_project, tmp_path):
    """A partial remote (one object gone): the pull fails with exit 4 and the cache holds no dataset."""
    client = pushed.client()
    victim = next(k for k in pushed.keys("dvc-test", "dvcstore/") if not k.endswith(".dir"))
    client.delete_object(Bucket="dvc-test", Key=victim)
    cache = tmp_path / "cache"
    env = base_env(**pushed.env(), MNIST_DATA_CACHE=str(cache), MNIST_PROJECT_DIR=str(image_like_project),
                   MNIST_DVC_REMOTE_URL=REMOTE)
    done = subprocess.run([sys.executable, "-m", "mnist_job", "pull-data"], capture_output=True, text=True,
                          env=env, cwd=image_like_project, timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    pulled = cache / "dvc-workspace" / "data" / "mnist"
    with pytest.raises(DataError):
        verify_dataset(pulled)
    assert not (cache / "PULLED").exists()
