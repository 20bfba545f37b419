"""Stage 4, evaluate: score the model ``train`` wrote on the test set; write metrics.json and the plots (DVC).

Scoring (torch) is imported only when a model is scored: the CLI reads ``METRICS_FILE`` to check ``--metrics``
before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_job.core.errors import DataError
from mnist_job.core.files import output_errors, write_atomically
from mnist_job.core.paths import FileOutput
from mnist_job.data.dvc_store import ensure_dataset
from mnist_job.data.format import load_dataset

if TYPE_CHECKING:
    from mnist_job.evaluation.scoring import Evaluation

# The top-level keys of the metrics file (scoring.Evaluation.to_json).
METRICS_KEYS = frozenset({"test_accuracy", "test_loss", "test_images", "per_class_accuracy", "confusion_matrix"})


def is_metrics_file(path: Path) -> bool:
    """Whether ``path`` is a metrics file this stage wrote: a small JSON object holding ``test_accuracy`` and no
    key but ``METRICS_KEYS`` (an older release's file, with fewer keys, counts too). Anything else at
    ``--metrics`` (params, a lock file, the user's own JSON) is not replaced."""
    try:
        with path.open("rb") as fh:
            text = fh.read(1 << 20)
        document = json.loads(text)
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and "test_accuracy" in document and set(document) <= METRICS_KEYS


METRICS_FILE = FileOutput("a metrics file written by `mnist-job evaluate`", is_metrics_file)


def write_report(evaluation: Evaluation, metrics_path: Path, plots_dir: Path) -> None:
    """The metrics file, then the plots; a path that cannot be written is one InvalidInput naming its flag."""
    from mnist_job.evaluation.scoring import plot_confusion

    for field, folder in (("--metrics", metrics_path.parent), ("--plots", plots_dir)):
        with output_errors(field, folder):  # both folders first: a folder that cannot be made fails before any write
            folder.mkdir(parents=True, exist_ok=True)
    with output_errors("--metrics", metrics_path):
        write_atomically(metrics_path, json.dumps(evaluation.to_json(), indent=2) + "\n")
    with output_errors("--plots", plots_dir):
        plot_confusion(evaluation, plots_dir / "confusion_matrix.png")
        write_atomically(plots_dir / "per_class_accuracy.csv", "digit,accuracy\n" + "".join(
            f"{d},{a:.6f}\n" for d, a in enumerate(evaluation.per_class_accuracy)))


def evaluate_saved_model(params, runtime, checkpoint: Path, metrics_path: Path, plots_dir: Path) -> Evaluation:
    """``mnist-job evaluate``: a checkpoint written by train, scored on the prepared test set."""
    from mnist_job.evaluation.scoring import evaluate, plot_curves
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
        with output_errors("--plots", plots_dir):
            plot_curves(state["history"], plots_dir / "training_curves.png")
    return evaluation
