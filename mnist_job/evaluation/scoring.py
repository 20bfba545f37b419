"""Scoring a model on labelled images, and the plots of a run: used by training, evaluation and serving.

``evaluate`` gives accuracy, loss, per-digit accuracy and the confusion matrix; ``plot_curves`` and
``plot_confusion`` draw what MLflow and DVC show. The ``evaluate`` stage (mnist_job/evaluation/evaluate.py) and
the final phase of training (mnist_job/training/loop.py) both use these, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnist_job.core.files import save_figure_atomically
from mnist_job.model.network import images_to_tensor


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    per_class_accuracy: list[float]
    confusion: np.ndarray  # rows: true digit, columns: predicted digit
    count: int

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        out = {f"{prefix}accuracy": self.accuracy, f"{prefix}loss": self.loss}
        out.update({f"{prefix}accuracy_digit_{d}": a for d, a in enumerate(self.per_class_accuracy)})
        return out

    def to_json(self) -> dict:
        return {
            "test_accuracy": round(self.accuracy, 6),
            "test_loss": round(self.loss, 6),
            "test_images": self.count,
            "per_class_accuracy": {str(d): round(a, 6) for d, a in enumerate(self.per_class_accuracy)},
            "confusion_matrix": self.confusion.tolist(),
        }


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, device: str | torch.device,
                   batch_size: int = 250) -> torch.Tensor:
    """Logits of uint8 images, normalised a batch at a time: small batches keep a worker's peak memory down."""
    model.eval()
    return torch.cat([model(images_to_tensor(images[i : i + batch_size], device))
                      for i in range(0, len(images), batch_size)])


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, device: str | torch.device = "cpu") -> Evaluation:
    y = torch.as_tensor(labels.astype(np.int64), device=device)
    logits = predict_logits(model, images, device)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    predicted = logits.argmax(1).cpu().numpy()
    truth = labels.astype(np.int64)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).tolist()
    return Evaluation(float((predicted == truth).mean()), float(loss), per_class, confusion, len(truth))


# ------------------------------------------------------------------ plots


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display in pods or CI
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    shown = np.log1p(evaluation.confusion)
    ax.imshow(shown, cmap="Blues")
    for (i, j), v in np.ndenumerate(evaluation.confusion):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
           title=f"Confusion matrix (test accuracy {evaluation.accuracy:.2%})")
    fig.tight_layout()
    save_figure_atomically(fig, path)
    plt.close(fig)
    return path


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    plt = _figure()
    epochs = [int(h["epoch"]) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        left.plot(epochs, [h[key] for h in history], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        right.plot(epochs, [h[key] for h in history], marker="o", label=label)
    left.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    right.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (left, right):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure_atomically(fig, path)
    plt.close(fig)
    return path
