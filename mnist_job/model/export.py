"""The model as it leaves training: a self-contained MLflow model that takes raw pixels.

The trained CNN expects pixels normalised with the training mean and standard deviation
(mnist_job/model/network.py, ``images_to_tensor``). Callers should not have to know that, so the
exported network does the same normalisation inside itself and ends in a softmax; the MLflow model
around it (mnist_job/model/pixel_pyfunc.py, copied into the model) checks and reshapes the pixels.
Training, evaluation and serving therefore use one normalisation: the one in network.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_job.model.network import PIXEL_MEAN, PIXEL_STD

PYFUNC_CODE = Path(__file__).with_name("pixel_pyfunc.py")
MAX_EXPORT_BATCH = 8192  # the exported graph's largest batch; callers split bigger ones
INPUT_CONTRACT = ("raw MNIST pixels: uint8, or int/float on the 0..255 scale (0..1 floats are refused); "
                  "shape (N, 28, 28), (N, 1, 28, 28) or (28, 28); white digit on black")
OUTPUT_CONTRACT = "one row per image: digit (0-9), then p0..p9, the 10 class probabilities"


class RawPixelNetwork(nn.Module):
    """float32 pixels (N, 1, 28, 28) on 0..255 -> class probabilities (N, 10)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * PIXEL_STD)))
        self.register_buffer("shift", torch.tensor(PIXEL_MEAN / PIXEL_STD))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels * self.scale - self.shift).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(x), dim=1)


def export_network(network: nn.Module, path: Path) -> Path:
    """``torch.export`` of the raw-pixel network, any batch size up to MAX_EXPORT_BATCH, saved to ``path``."""
    module = RawPixelNetwork(network.to("cpu")).eval()
    example = torch.zeros(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def model_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # No input schema: MLflow's tensor schemas fix one dtype and one rank, and this model takes
    # uint8 and float, 3-D and 4-D; pixel_pyfunc.py checks the input instead (INPUT_CONTRACT).
    outputs = Schema([ColSpec("long", "digit")] + [ColSpec("float", f"p{d}") for d in range(10)])
    return ModelSignature(inputs=None, outputs=outputs)


def log_pixel_model(network: nn.Module, example_images: np.ndarray, name: str = "model") -> str:
    """Log the raw-pixel model to the active MLflow run; returns its ``models:/m-...`` URI."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        program = export_network(network, Path(folder) / "network.pt2")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_CODE),
            artifacts={"network": str(program)},
            signature=model_signature(),
            input_example=np.ascontiguousarray(example_images, dtype=np.uint8),
            metadata={"input": INPUT_CONTRACT, "output": OUTPUT_CONTRACT},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                              "numpy", "pandas"],
        )
    return info.model_uri
