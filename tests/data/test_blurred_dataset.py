"""The blurred variant: the same split, every image blurred, a second DVC-tracked dataset (data/mnist-blurred)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_job.core.errors import InvalidInput
from mnist_job.data.dvc_store import dvc_lock_hash
from mnist_job.data.format import MANIFEST, load_dataset
from mnist_job.data.prepare import blur_images, prepare
from tests.support.cli import run_cli


def test_one_bright_pixel_spreads_into_the_binomial_kernel():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 10, 12] = 255
    blurred = blur_images(image)[0].astype(np.int64)
    expected = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) * 255
    assert blurred[8:13, 10:15].tolist() == ((expected + 128) // 256).tolist()
    assert blurred.sum() - blurred[8:13, 10:15].sum() == 0  # nothing beyond two pixels


def test_blur_keeps_range_and_ink_and_is_the_same_every_time():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    images[:, :3, :] = images[:, -3:, :] = images[:, :, :3] = images[:, :, -3:] = 0  # MNIST's empty border
    once, again = blur_images(images), blur_images(images)
    assert once.dtype == np.uint8 and np.array_equal(once, again)
    assert abs(int(once.sum()) - int(images.sum())) < images.size * 0.5  # only rounding moves ink
    assert not np.array_equal(once, images)
    full = np.full((1, 28, 28), 255, dtype=np.uint8)
    assert blur_images(full)[0, 2:-2, 2:-2].min() == 255  # no overflow past 255


def test_prepare_blur_writes_a_dataset_that_says_so(tmp_path, project_dir, prepared_dataset):
    out = tmp_path / "mnist-blurred"
    manifest = prepare(project_dir / "data" / "raw", out, transform="blur")
    assert manifest["transform"].startswith("gaussian sigma 1 px")
    plain, blurred = load_dataset(prepared_dataset), load_dataset(out)
    assert np.array_equal(plain.train_labels, blurred.train_labels)
    assert np.array_equal(blur_images(plain.test_images[:100]), blurred.test_images[:100])
    assert "transform" not in json.loads((prepared_dataset / MANIFEST).read_text())


def test_the_blurred_dataset_is_tracked_by_dvc_next_to_the_plain_one(project_dir):
    plain, blurred = dvc_lock_hash(project_dir, "data/mnist"), dvc_lock_hash(project_dir, "data/mnist-blurred")
    assert plain and blurred and plain != blurred


def test_an_unknown_transform_is_refused(tmp_path, project_dir):
    with pytest.raises(InvalidInput, match="--transform"):
        prepare(project_dir / "data" / "raw", tmp_path / "x", transform="sharpen")
    done = run_cli("prepare", "--transform", "sharpen", cwd=tmp_path)
    assert done.returncode == 2 and "sharpen" in done.stderr and "Traceback" not in done.stderr
