"""Stage 4, evaluate: score the model ``train`` wrote on the test set; write metrics.json and the plots (DVC)."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_job.core.files import write_atomically
from mnist_job.evaluation.scoring import Evaluation, evaluate, plot_confusion, plot_curves


def write_report(evaluation: Evaluation, metrics_path: Path, plots_dir: Path) -> None:
    write_atomically(metrics_path, json.dumps(evaluation.to_json(), indent=2) + "\n")
    plot_confusion(evaluation, plots_dir / "confusion_matrix.png")
    write_atomically(plots_dir / "per_class_accuracy.csv", "digit,accuracy\n" + "".join(
        f"{d},{a:.6f}\n" for d, a in enumerate(evaluation.per_class_accuracy)))


def evaluate_saved_model(params, runtime, checkpoint: Path, metrics_path: Path, plots_dir: Path) -> Evaluation:
    """``mnist-job evaluate``: a checkpoint written by train, scored on the prepared test set."""
    from mnist_job.core.errors import DataError
    from mnist_job.data.dvc_store import ensure_dataset
    from mnist_job.data.format import load_dataset
    from mnist_job.model.network import build_model, load_checkpoint

    if not checkpoint.is_file():
        raise DataError(f"--model: {checkpoint} does not exist; run `mnist-job train` first")
    state = load_checkpoint(checkpoint, "cpu")
    model = build_model(**state["model_params"])
    model.load_state_dict(state["model"])
    data = load_dataset(ensure_dataset(params.data, runtime), checksums=False)  # verified by ensure_dataset
    n = params.data.test_subset or len(data.test_labels)
    evaluation = evaluate(model, data.test_images[:n], data.test_labels[:n])
    write_report(evaluation, metrics_path, plots_dir)
    if state.get("history"):
        plot_curves(state["history"], plots_dir / "training_curves.png")
    return evaluation
