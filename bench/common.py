"""Shared by the orchestrator and the contenders: paths, the test set, params, epoch lines, GEMM FLOP/s, atomic JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_DIR / "data" / "mnist"
TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (about 2x forward) per training image


def load_arrays():
    """The prepared dataset, checksum-verified (mnist_job.data.format.load_dataset)."""
    from mnist_job.data.format import load_dataset

    return load_dataset(DATA_DIR)


def test_tensors(data, test_subset: int):
    """The same test set for every contender: the first ``test_subset`` (0: all 10,000) test images."""
    import torch

    from mnist_job.model.network import images_to_tensor

    n = test_subset or len(data.test_labels)
    return images_to_tensor(data.test_images[:n]), torch.as_tensor(data.test_labels[:n].astype(np.int64))


def test_accuracy(model, x, y) -> float:
    """Accuracy on the test tensors (argmax of logits or log-probabilities); untimed by every contender."""
    from mnist_job.training.epoch import score

    _, correct, seen = score(model, x, y)
    return correct / seen


def project_params(cfg: dict, overrides: list[str] = ()):
    """params.yaml with the round's seed and the benchmark's overrides (quick mode: a subset, one epoch)."""
    from mnist_job.core.config import load_params

    sets = [*overrides, f"train.seed={cfg['seed']}"]
    if cfg["train_subset"]:
        sets += [f"data.train_subset={cfg['train_subset']}", f"data.validation_size={cfg['validation_size']}"]
    if cfg.get("project_epochs"):
        sets.append(f"train.epochs={cfg['project_epochs']}")
    sets.append(f"data.test_subset={cfg['test_subset']}")
    return load_params(PROJECT_DIR / "params.yaml", sets)


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def epoch_reporter(epochs: list[dict], name: str):
    """A contender's per-epoch callback: keeps each record in ``epochs`` and prints one line."""
    def report(record: dict) -> None:
        epochs.append(record)
        _say(f"{name} epoch {record['epoch']}: test_acc={record['test_accuracy']:.4f} "
             f"train={record['train_s']:.1f}s elapsed={record['elapsed_s']:.1f}s "
             f"images/s={record['images_per_s']:.0f}")
    return report


def gemm_gflops(threads: int, n: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of a large fp32 matmul on ``threads`` threads (2 n^3 per product), best of short bursts."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for _ in range(2):
                torch.mm(a, b, out=out)
            best = max(best, 2 * 2 * n**3 / (time.perf_counter() - t0))
        return best / 1e9
    finally:
        torch.set_num_threads(previous)


def write_json(path: Path, obj) -> None:
    """Whole or not at all: a reader never sees half a results file (mnist_job/core/files.py)."""
    from mnist_job.core.files import write_atomically

    write_atomically(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
