"""The pytorch/examples MNIST recipe, reimplemented for the benchmark (no code copied).

What the recipe is: two 3x3 convolutions (32 and 64 channels, no padding), a 2x2
max-pool, dropout 0.25, a 128-unit fully connected layer, dropout 0.5, 10 outputs
with log-softmax and NLL loss; Adadelta at lr 1.0 with StepLR (gamma 0.7) each
epoch; batch 64 (test batch 1000); a torch DataLoader whose dataset converts each
image to a PIL image and applies ToTensor + Normalize((0.1307,), (0.3081,)) per
sample. The one deviation: the examples only shuffle on an accelerator; here the
training loader shuffles (as every sensible CPU run does), with no loader workers.
``run(..., preloaded=True)`` is the same recipe with the data held in one tensor.
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


class IndexDataset(torch.utils.data.Dataset):
    """Only positions: a DataLoader over it draws the same shuffled batches as over PilMnist."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def normalised_tensor(images: np.ndarray) -> torch.Tensor:
    """ToTensor + Normalize of every image at once: (uint8 / 255 - mean) / std, shape (N, 1, 28, 28)."""
    x = torch.from_numpy(images).unsqueeze(1).float().div(255)
    return (x - 0.1307) / 0.3081


def run(cfg: dict, data, test_x, test_y, report, preloaded: bool = False,
        device: torch.device = torch.device("cpu")) -> dict:
    """The recipe's fixed schedule: ``cfg['epochs']`` epochs with ``torch.manual_seed(cfg['seed'])``.

    ``preloaded``: the same model, optimiser, seed, shuffling and batches, but each batch is sliced
    from one normalised tensor prepared before training instead of built image by image; the two
    draw the same random numbers in the same order, so they differ only in the data path.
    ``device``: on an accelerator the loader runs as the example runs it there (one loader process,
    pinned memory) and each batch is copied over; ``test_x`` and ``test_y`` must be on the device.
    Returns the model, the seconds spent scoring the test set (untimed) and a description.
    """
    from bench.common import test_accuracy

    torch.manual_seed(cfg["seed"])
    n = cfg["train_subset"] or len(data.train_labels)
    images, labels = data.train_images[:n], data.train_labels[:n]
    accelerated = device.type != "cpu"
    loader_options = {"batch_size": 64, "shuffle": True, "num_workers": 1 if accelerated else 0,
                      "pin_memory": accelerated}
    if preloaded:
        x_all, y_all = normalised_tensor(images), torch.as_tensor(labels.astype(np.int64))
        loader = torch.utils.data.DataLoader(IndexDataset(n), **loader_options)
    else:
        loader = torch.utils.data.DataLoader(PilMnist(images, labels), **loader_options)
    model = ExamplesNet().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    elapsed = scoring = 0.0
    for epoch in range(1, cfg["epochs"] + 1):
        model.train()
        seen = 0
        t0 = time.perf_counter()
        for batch in loader:
            xb, yb = (x_all[batch], y_all[batch]) if preloaded else batch
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = F.nll_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            seen += len(yb)
        scheduler.step()
        if accelerated:
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        elapsed += train_s
        t1 = time.perf_counter()
        acc = test_accuracy(model, test_x, test_y)  # untimed
        scoring += time.perf_counter() - t1
        report({"epoch": epoch, "train_s": train_s, "epoch_s": train_s, "elapsed_s": elapsed, "images": seen,
                "images_per_s": seen / train_s, "test_accuracy": acc})
    recipe = ("pytorch/examples mnist: Adadelta lr 1.0, StepLR 0.7, batch 64, "
              + ("batches sliced from one preloaded normalised tensor" if preloaded
                 else "DataLoader + per-sample ToTensor/Normalize"))
    return {"model": model, "scoring_s": scoring, "recipe": recipe}
