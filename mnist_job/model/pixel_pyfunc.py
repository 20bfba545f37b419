"""The registered model as MLflow loads it: raw MNIST pixels in, digit and 10 probabilities out.

MLflow copies this file into the model (models from code) and runs it wherever the model is loaded,
so it imports nothing from mnist_job: a stock ``mlflow.pyfunc.load_model`` needs only numpy, pandas
and torch. The network itself is a ``torch.export`` program (artifact ``network``) that normalises
inside (mnist_job/model/export.py); this file only checks and reshapes what callers send:

- uint8, or integers/floats on the 0..255 scale (white digit on black, as in MNIST);
- shape (N, 28, 28), (N, 1, 28, 28), or one image (28, 28);
- an image whose pixels are floats in 0..1 (scaled already) is refused: it would give wrong digits.
"""

from __future__ import annotations

import numpy as np

DIGIT_COLUMNS = [f"p{d}" for d in range(10)]
CHUNK = 1024  # images per forward pass; the exported graph takes at most 8192 (mnist_job/model/export.py)


def pixel_batch(values) -> np.ndarray:
    """float32 (N, 1, 28, 28) on the 0..255 scale, or ValueError naming what is wrong with ``values``."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise ValueError("pixels: not a rectangular array of numbers") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"pixels: expected numbers, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(f"pixels: expected shape (N, 28, 28), (N, 1, 28, 28) or (28, 28), got {tuple(np.shape(values))}")
    if array.shape[0] == 0:
        raise ValueError("pixels: the batch is empty")
    pixels = array.astype(np.float32)
    if not np.isfinite(pixels).all():
        raise ValueError("pixels: NaN or infinite values")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
        raise ValueError(f"pixels: values must lie in 0..255, got {low:g}..{high:g}")
    if np.issubdtype(array.dtype, np.floating):
        peaks = pixels.reshape(len(pixels), -1).max(axis=1)
        scaled = np.flatnonzero((peaks > 0) & (peaks <= 1.0))
        if scaled.size:
            raise ValueError(f"pixels: image {int(scaled[0])} has floats in 0..1; this model takes the 0..255 "
                             "scale (multiply by 255)")
    return pixels[:, None]


def probabilities_frame(probabilities: np.ndarray):
    """The model's output: one row per image, ``digit`` then ``p0``..``p9``."""
    import pandas as pd

    frame = pd.DataFrame(probabilities.astype(np.float32), columns=DIGIT_COLUMNS)
    frame.insert(0, "digit", probabilities.argmax(axis=1).astype(np.int64))
    return frame


def _load_mlflow_model():
    import mlflow.pyfunc

    class MnistPixelModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            import torch

            self.network = torch.export.load(context.artifacts["network"]).module()

        def predict(self, context, model_input, params=None):
            import torch

            if hasattr(model_input, "to_numpy"):  # a DataFrame: one image per row, 784 columns
                model_input = model_input.to_numpy().reshape(-1, 28, 28)
            pixels = pixel_batch(model_input)
            with torch.no_grad():
                probabilities = np.concatenate([self.network(torch.from_numpy(pixels[i : i + CHUNK])).numpy()
                                                for i in range(0, len(pixels), CHUNK)])
            return probabilities_frame(probabilities)

    mlflow.models.set_model(MnistPixelModel())


if __name__ != "mnist_job.model.pixel_pyfunc":  # loaded by MLflow as the model's code, not imported from the package
    _load_mlflow_model()
