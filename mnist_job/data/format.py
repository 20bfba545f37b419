"""The dataset's format: the files of a prepared dataset, their manifest and checksums, the IDX codec.

A prepared dataset is four uint8 ``.npy`` arrays and ``manifest.json`` (SHA-256, shape, per-class
counts). Every load checks the SHA-256 of every file against the manifest; a partial or corrupted
copy (an interrupted pull, a changed file) is refused, never trained on. Getting the dataset onto a
node with DVC is mnist_job/data/dvc_store.py.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_job.core.errors import DataError

MANIFEST = "manifest.json"
SPLIT_FILES = {
    "train_images": "train_images.npy",
    "train_labels": "train_labels.npy",
    "test_images": "test_images.npy",
    "test_labels": "test_labels.npy",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_dataset(folder: Path) -> dict:
    """Return the manifest if every file is present and matches it; raise DataError otherwise."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"dataset {folder}: {MANIFEST} is missing (not prepared, or an incomplete pull)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError):
        raise DataError(f"dataset {folder}: {MANIFEST} is unreadable") from None
    for filename in SPLIT_FILES.values():
        entry = files.get(filename)
        path = folder / filename
        if entry is None:
            raise DataError(f"dataset {folder}: {MANIFEST} has no entry for {filename}")
        if not path.is_file():
            raise DataError(f"dataset {folder}: {filename} is missing (an incomplete pull?)")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DataError(
                f"dataset {folder}: {filename} fails its checksum "
                f"(sha256 {actual[:12]}..., manifest says {entry['sha256'][:12]}...); refusing to use it"
            )
    return manifest


@dataclass(frozen=True)
class MnistArrays:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    manifest: dict


def load_dataset(folder: Path, checksums: bool = True) -> MnistArrays:
    """The arrays of a prepared dataset; ``checksums=False`` only where the caller just verified it
    (``ensure_dataset`` does): 55 MB hashed once per worker, not twice."""
    manifest = verify_dataset(folder) if checksums else json.loads((folder / MANIFEST).read_text())
    arrays = {key: np.load(folder / name, allow_pickle=False) for key, name in SPLIT_FILES.items()}
    return MnistArrays(**arrays, manifest=manifest)


def manifest_digest(manifest: dict) -> str:
    """One short id for the dataset's content (tagged on MLflow runs)."""
    canonical = json.dumps(manifest["files"], sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()


# ------------------------------------------------------------------ IDX, the official MNIST files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_idx(array: np.ndarray) -> bytes:
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def decode_idx(data: bytes, name: str = "IDX") -> np.ndarray:
    if len(data) < 4 or data[0:3] != b"\x00\x00\x08":
        raise DataError(f"{name}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if ndim not in (1, 3):
        raise DataError(f"{name}: unexpected number of dimensions {ndim}")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{name}: truncated ({len(body)} bytes of pixels/labels, expected {int(np.prod(shape))})")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)
