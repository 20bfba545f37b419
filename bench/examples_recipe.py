"""The pytorch/examples MNIST recipe, reimplemented for the benchmark (no code copied).

What the recipe is: two 3x3 convolutions (32 and 64 channels, no padding), a 2x2
max-pool, dropout 0.25, a 128-unit fully connected layer, dropout 0.5, 10 outputs
with log-softmax and NLL loss; Adadelta at lr 1.0 with StepLR (gamma 0.7) each
epoch; batch 64 (test batch 1000); a torch DataLoader whose dataset converts each
image to a PIL image and applies ToTensor + Normalize((0.1307,), (0.3081,)) per
sample. The one deviation: the examples only shuffle on an accelerator; here the
training loader shuffles (as every sensible CPU run does), with no loader workers.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ExamplesNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


class PilMnist(torch.utils.data.Dataset):
    """uint8 arrays served the torchvision way: PIL image per sample, then the transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images, labels.astype(np.int64)
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def run(cfg: dict, data, test_x, test_y, report) -> dict:
    """Train until the test accuracy first reaches ``cfg['target']`` (or ``examples_max_epochs``)."""
    from bench.common import test_accuracy

    torch.manual_seed(1)  # the examples' default seed
    n = cfg["train_subset"] or len(data.train_labels)
    loader = torch.utils.data.DataLoader(PilMnist(data.train_images[:n], data.train_labels[:n]),
                                         batch_size=64, shuffle=True, num_workers=0)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    elapsed = 0.0
    for epoch in range(1, cfg["examples_max_epochs"] + 1):
        model.train()
        seen = 0
        t0 = time.perf_counter()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            seen += len(yb)
        scheduler.step()
        train_s = time.perf_counter() - t0
        elapsed += train_s
        acc = test_accuracy(model, test_x, test_y)  # untimed
        report({"epoch": epoch, "train_s": train_s, "epoch_s": train_s, "elapsed_s": elapsed, "images": seen,
                "images_per_s": seen / train_s, "test_accuracy": acc})
        if acc >= cfg["target"] and cfg.get("stop_at_target", True):
            break
    return {"model": model, "recipe": "pytorch/examples mnist: Adadelta lr 1.0, StepLR 0.7, batch 64, "
                                      "DataLoader + per-sample ToTensor/Normalize"}
