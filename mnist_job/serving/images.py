"""Images from anywhere turned into MNIST pixels: 28x28 uint8, white digit on black, centred as MNIST's were.

MNIST's digits were fitted into a 20x20 box (keeping the aspect ratio) and placed in a 28x28 image
so that their centre of mass is at the centre. A photo or a drawing is converted the same way:
grayscale, inverted when it is dark on light, cropped to the digit, fitted, centred by mass.
Arrays (.npy) and IDX files are taken as MNIST pixels already; the model checks their values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_job.core.errors import DataError, InvalidInput
from mnist_job.data.format import decode_idx

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
ARRAY_SUFFIXES = {".npy"}
INVERT_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class Sample:
    name: str  # what the user gave: a file, or file[index] for one image of an array
    pixels: np.ndarray  # (28, 28); uint8 for images, as stored for arrays


def is_idx(path: Path) -> bool:
    return "idx" in path.name.lower() or path.suffix.lower() in {".ubyte"}


def mnist_pixels(gray: np.ndarray, invert: str = "auto") -> np.ndarray:
    """A grayscale image (H, W), 0..255, of one digit -> (28, 28) uint8 the MNIST way."""
    from PIL import Image

    gray = gray.astype(np.float32)
    if invert == "yes" or (invert == "auto" and _light_background(gray)):
        gray = 255.0 - gray
    gray -= gray.min()  # a grey background becomes black
    if gray.max() <= 0:
        raise DataError("blank image: no digit to classify")
    rows, cols = np.nonzero(gray > gray.max() * 0.1)
    digit = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = digit.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(digit * (255.0 / digit.max())).resize(size, Image.LANCZOS), dtype=np.float32)
    fitted = np.clip(fitted, 0, 255)
    mass = fitted.sum()
    cy, cx = (np.arange(fitted.shape[0]) @ fitted.sum(1)) / mass, (np.arange(fitted.shape[1]) @ fitted.sum(0)) / mass
    top, left = int(round(14 - cy)), int(round(14 - cx))
    top, left = min(max(top, 0), 28 - fitted.shape[0]), min(max(left, 0), 28 - fitted.shape[1])
    out = np.zeros((28, 28), dtype=np.float32)
    out[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return np.rint(out).astype(np.uint8)


def _light_background(gray: np.ndarray) -> bool:
    """Dark on light when the border (where a centred digit is not) is mostly bright."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127


def decode_image(data: bytes, name: str, invert: str = "auto") -> np.ndarray:
    """PNG/JPEG/... bytes of any size and mode -> MNIST pixels; DataError when they are not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # a drawing on a transparent canvas: what is see-through is background (white paper)
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, rgba)
            gray = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: not a readable image ({type(exc).__name__}: {str(exc)[:200]})") from None
    return mnist_pixels(gray, invert)


def read_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({str(exc)[:200]})") from None
    return _check_pixels(array, str(path))


def read_idx(path: Path) -> np.ndarray:
    array = decode_idx(path.read_bytes(), str(path))
    if array.ndim != 3:
        raise DataError(f"{path}: an IDX file of labels, not images (shape {array.shape})")
    return _check_pixels(array, str(path))


def _check_pixels(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28) or len(array) == 0:
        raise DataError(f"{name}: expected images of shape (N, 28, 28), (N, 1, 28, 28) or (28, 28), got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{name}: expected uint8 or float pixels, got dtype {array.dtype}")
    return array


def collect(paths: list[Path], invert: str = "auto") -> list[Sample]:
    """Every image the paths name, in order: files, folders (sorted, not recursive), arrays, IDX files."""
    if invert not in INVERT_CHOICES:
        raise InvalidInput(f"--invert: {invert!r}; choose one of {', '.join(INVERT_CHOICES)}")
    samples: list[Sample] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and _readable_kind(p))
            if not inside:
                raise InvalidInput(f"{path}: the folder holds no images (.png, .jpg, .npy, IDX)")
            samples.extend(s for p in inside for s in _samples_of(p, invert))
        elif path.is_file():
            samples.extend(_samples_of(path, invert))
        else:
            raise InvalidInput(f"{path}: no such file or folder")
    return samples


def _readable_kind(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | ARRAY_SUFFIXES or is_idx(path)


def _samples_of(path: Path, invert: str) -> list[Sample]:
    if path.suffix.lower() in ARRAY_SUFFIXES or is_idx(path):
        array = read_array(path) if path.suffix.lower() in ARRAY_SUFFIXES else read_idx(path)
        return [Sample(f"{path}[{i}]", image) for i, image in enumerate(array)]
    return [Sample(str(path), decode_image(path.read_bytes(), str(path), invert))]
