"""One worker's epoch, as numbers: the train/validation split, its share of each epoch's order, one pass
over it, the score, the sums over the ranks, and the random state a checkpoint keeps; and what a worker holds
while it trains (its place in the group, its shard, its training state).

No Ray here: mnist_job/training/loop.py runs these on each Ray Train worker, and the benchmark (bench/)
runs the same ones outside Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mnist_job.model.network import images_to_tensor

if TYPE_CHECKING:
    from mnist_job.data.format import MnistArrays
    from mnist_job.tracking.runs import EpochMetricsLogger


def split_train_validation(train_images: np.ndarray, train_labels: np.ndarray, validation_size: int, subset: int):
    """Deterministic: the last ``validation_size`` images (of the subset) are held out."""
    if subset:
        train_images, train_labels = train_images[:subset], train_labels[:subset]
    cut = len(train_images) - validation_size
    return (train_images[:cut], train_labels[:cut]), (train_images[cut:], train_labels[cut:])


def shard_indices(n: int, epoch: int, seed: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of one epoch's shuffled order; every rank gets the same count."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    per_rank = n // world
    return order[rank * per_rank : (rank + 1) * per_rank]


def all_reduce(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def rank_seed(seed: int, rank: int) -> int:
    """A seed per rank: dropout masks differ between ranks but repeat from run to run."""
    return seed * 1_000_003 + rank + 1


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"].cpu())  # the checkpoint may have been mapped onto the GPU
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def gather(value, world: int) -> list:
    if world == 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def run_epoch(model, optimizer, scheduler, images: torch.Tensor, y: torch.Tensor, shard: torch.Tensor,
              local_batch: int, on_progress=None):
    """One pass over this rank's shard; returns (loss sum, correct, seen).

    ``images`` are the raw uint8 pixels (N, 28, 28), normalised a batch at a time (four element-wise
    operations): a float32 copy of the whole training set would cost every worker 172 MB more.
    ``on_progress(step, steps)``, if given, is called about 20 times per epoch (rank 0's progress bar).
    """
    if images.dtype != torch.uint8:  # normalising normalised floats again would train on garbage, silently
        raise TypeError(f"run_epoch takes uint8 pixels, not {images.dtype}")
    model.train()
    loss_fn = torch.nn.functional.cross_entropy
    loss_sum = torch.zeros((), device=images.device, dtype=torch.float64)
    correct = torch.zeros((), device=images.device, dtype=torch.int64)
    steps = len(shard) // local_batch  # equal on every rank: no rank waits on a missing all-reduce
    shard = shard.to(images.device)
    every = max(1, steps // 20)
    for step in range(steps):
        if on_progress and step % every == 0:
            on_progress(step, steps)
        idx = shard[step * local_batch : (step + 1) * local_batch]
        xb, yb = images_to_tensor(images[idx], images.device), y[idx]
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
    return loss_sum.item(), correct.item(), steps * local_batch


@torch.no_grad()
def score(model, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> tuple[float, float, int]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch])
        loss_sum += torch.nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return loss_sum, correct, len(x)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


@dataclass(frozen=True)
class Worker:
    """This worker's place in the group."""

    rank: int
    world: int
    device: torch.device


@dataclass(frozen=True)
class Shard:
    """What this rank trains and scores on: the training set (each epoch it takes its share of the order)
    and its own slice of the validation set, summed over the ranks after each epoch."""

    data: MnistArrays  # the whole dataset as loaded: its test split is rank 0's final evaluation
    x: torch.Tensor  # uint8 training images: run_epoch normalises each batch
    y: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor


@dataclass
class TrainingState:
    """What the epochs change and a checkpoint keeps; ``metrics_logger`` on rank 0 only."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1
    metrics_logger: EpochMetricsLogger | None = None
