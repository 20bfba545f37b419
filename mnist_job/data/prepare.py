"""Stage 2, prepare: raw IDX files -> the compact, checksummed dataset DVC tracks.

``data/mnist`` holds four ``.npy`` arrays (uint8 images N x 28 x 28, uint8
labels) and ``manifest.json`` with the SHA-256, shape and per-class counts of
each. Workers memory-map nothing and transform nothing per sample: they load
the arrays whole (about 55 MB) and normalise once, which is what makes the
training loop arithmetic-bound (see bench/).

The folder is built under a temporary name and swapped in whole, manifest
included, so a crash leaves either the old dataset or none, never a mix.

``transform="blur"`` builds a variant of the same split with every image
blurred (``blur_images``): the second DVC-tracked dataset, data/mnist-blurred
(dvc.yaml, stage prepare-blurred), which the ``blurred`` experiment trains on.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from mnist_job.core.errors import DataError, InvalidInput
from mnist_job.core.paths import Output
from mnist_job.data.fetch import CHECKSUMS, RAW_FILES, raw_is_complete
from mnist_job.data.format import MANIFEST, SPLIT_FILES, decode_idx, sha256_file, verify_dataset

logger = logging.getLogger(__name__)

DATASET_FORMAT = "mnist-npy/1"  # in every manifest prepare writes: the proof that a folder is its own

# Official per-class counts (digits 0..9): checked so a wrong or reordered
# source cannot pass as MNIST.
OFFICIAL_CLASS_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
RAW_OF_SPLIT = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


TRANSFORMS = ("none", "blur")
# what `mnist-job prepare` writes (checked before it runs: mnist_job/core/paths.py)
PREPARE_OUTPUTS = (Output("data.dir", lambda args, params, runtime: params.data.dir),)
BINOMIAL_5 = np.array([1, 4, 6, 4, 1], dtype=np.int64)  # sums to 16; variance 1: a Gaussian of sigma 1 px


def blur_images(images: np.ndarray) -> np.ndarray:
    """Gaussian blur of sigma 1 px, as the 5-tap binomial kernel, in integers, edges padded with zeros.

    Integer arithmetic with one rounding at the end (half up) gives the same bytes on every CPU, so the
    blurred dataset's DVC hash does not depend on the machine that prepared it; float convolutions may
    round a pixel differently from one vector unit to the next.
    """
    padded = np.pad(images.astype(np.int64), ((0, 0), (2, 2), (2, 2)))
    rows = sum(w * padded[:, i : i + images.shape[1], :] for i, w in enumerate(BINOMIAL_5))
    both = sum(w * rows[:, :, i : i + images.shape[2]] for i, w in enumerate(BINOMIAL_5))
    return ((both + 128) // 256).astype(np.uint8)  # 256 = 16 x 16; the result stays within 0..255


def build_arrays(raw_dir: Path, transform: str = "none") -> dict[str, np.ndarray]:
    if not raw_is_complete(raw_dir):
        missing = [n for n in (*RAW_FILES, CHECKSUMS) if not (raw_dir / n).is_file()]
        why = f"missing {', '.join(missing)}" if missing else "a file fails its checksum"
        raise DataError(f"raw data in {raw_dir} is incomplete ({why}); run `mnist-job fetch` first")
    arrays: dict[str, np.ndarray] = {}
    for split, (images_name, labels_name) in RAW_OF_SPLIT.items():
        images = decode_idx((raw_dir / images_name).read_bytes(), images_name)
        labels = decode_idx((raw_dir / labels_name).read_bytes(), labels_name)
        counts = np.bincount(labels, minlength=10).tolist()
        if counts != OFFICIAL_CLASS_COUNTS[split]:
            raise DataError(f"{split} split: class counts {counts} differ from official MNIST {OFFICIAL_CLASS_COUNTS[split]}")
        arrays[f"{split}_images"] = blur_images(images) if transform == "blur" else images
        arrays[f"{split}_labels"] = labels
    return arrays


def write_dataset(arrays: dict[str, np.ndarray], out_dir: Path, transform: str = "none") -> dict:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    files = {}
    for key, filename in SPLIT_FILES.items():
        array = np.ascontiguousarray(arrays[key], dtype=np.uint8)
        np.save(staging / filename, array, allow_pickle=False)
        files[filename] = {"sha256": sha256_file(staging / filename), "shape": list(array.shape), "dtype": "uint8"}
    manifest = {
        "format": DATASET_FORMAT,
        "files": files,
        "class_counts": {s: np.bincount(arrays[f"{s}_labels"], minlength=10).tolist() for s in ("train", "test")},
    }
    if transform != "none":  # absent for the plain dataset, whose manifest (and DVC hash) stays as it was
        manifest["transform"] = {"blur": "gaussian sigma 1 px (5-tap binomial, integer)"}[transform]
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    verify_dataset(staging)  # what we wrote reads back and checks out
    backup = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if out_dir.exists():
        out_dir.replace(backup)
    staging.replace(out_dir)
    shutil.rmtree(backup, ignore_errors=True)
    return manifest


def check_replaceable(out_dir: Path) -> None:
    """Only an absent or empty folder, or a dataset this stage wrote (its manifest says so), is replaced."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    try:
        ours = json.loads((out_dir / MANIFEST).read_text()).get("format") == DATASET_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise InvalidInput(f"data.dir: {out_dir} exists and is not a dataset written by prepare (no {MANIFEST} of "
                           f"format {DATASET_FORMAT}); refusing to replace it: move it away or pick another data.dir")


def prepare(raw_dir: Path, out_dir: Path, force: bool = False, transform: str = "none") -> dict:
    if transform not in TRANSFORMS:
        raise InvalidInput(f"--transform: {transform!r} is not one of {', '.join(TRANSFORMS)}")
    check_replaceable(out_dir)
    arrays = build_arrays(raw_dir, transform)
    if not force and (out_dir / MANIFEST).is_file():
        try:
            current = verify_dataset(out_dir)
        except DataError:
            current = None
        wanted = {f: array_sha256_of(arrays[k]) for k, f in SPLIT_FILES.items()}
        if current and all(current["files"][f]["sha256"] == s for f, s in wanted.items()):
            logger.info(f"prepare: {out_dir} is up to date and verified; nothing to do")
            return current
    manifest = write_dataset(arrays, out_dir, transform)
    counts = {s: sum(c) for s, c in manifest["class_counts"].items()}
    what = "" if transform == "none" else f", {manifest['transform']}"
    logger.info(f"prepare: wrote {out_dir} ({counts['train']} train / {counts['test']} test images{what}, checksummed)")
    return manifest


def array_sha256_of(array: np.ndarray) -> str:
    """SHA-256 the .npy file of ``array`` would have, without writing it."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.uint8), allow_pickle=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()
