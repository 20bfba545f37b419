"""The CNN, and turning uint8 images into its input.

Three conv blocks with BatchNorm that pool early (28 -> 14 -> 7 -> 4), so most
arithmetic happens on small maps; no fully connected hidden layer. The last pooling
rounds up (its last windows cover the 7th row and column alone): a plain 2x2 pooling
of the 7x7 map gives 3x3 and throws away its bottom row and right column, which the
last conv has computed. It reaches 99% test accuracy in a few epochs at batch 256 and
runs in channels_last, which is about 30% faster on CPU (docs/design-notes.md, bench/).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mnist_job.core.errors import DataError

# Mean and standard deviation of MNIST training pixels (scaled to 0..1).
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081


def conv_block(c_in: int, c_out: int, ceil_mode: bool = False) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=ceil_mode),
    )


class MnistCNN(nn.Module):
    def __init__(self, width: int = 32, dropout: float = 0.1):
        super().__init__()
        self.width = width
        self.features = nn.Sequential(conv_block(1, width), conv_block(width, 2 * width),
                                      conv_block(2 * width, 4 * width, ceil_mode=True))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(width: int, dropout: float) -> MnistCNN:
    return MnistCNN(width=width, dropout=dropout).to(memory_format=torch.channels_last)


def images_to_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float32 (N, 1, 28, 28), channels_last (training: one batch at a time)."""
    x = torch.as_tensor(images).to(device)
    x = x.unsqueeze(1).float().div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)
    return x.contiguous(memory_format=torch.channels_last)


def count_flops_per_image(model: nn.Module) -> int:
    """Multiply-adds x 2 of one forward pass (conv and linear layers), by shape arithmetic."""
    flops = 0
    hooks = []

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal flops
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        flops += 2 * k * output[0].numel()

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal flops
        flops += 2 * module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return flops


def load_checkpoint(path, map_location: torch.device | str = "cpu") -> dict:
    """A training checkpoint (tensors, numbers, strings, lists and dicts of them) and nothing else.

    ``weights_only=True`` lets torch rebuild only those types, so a tampered checkpoint cannot run
    code on load; one that needs more is refused, never loaded with the unsafe unpickler.
    """
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {path}: holds more than tensors and plain values ({first}); "
                        "refusing to load it") from None
