"""What a finished study leaves on its parent MLflow run: the best config, the best trial's model, the plots.

The best config goes in tags (``best.<params key>``) and ``best_config.json``: tags and artifacts can be
written again when a resumed study finds a better trial, where MLflow params cannot change.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mnist_job.core.tuning_params import SEARCHABLE


def trials_table(rows: list[dict]) -> str:
    keys = sorted({k for r in rows for k in r["config"]})
    header = "| trial | " + " | ".join(SEARCHABLE[k][0] for k in keys) + " | epochs | val_accuracy | run |\n"
    lines = [header + "|---|" + "---|" * (len(keys) + 3)]
    for r in rows:
        cells = [f"{r['config'][k]:.4g}" if k in r["config"] else "-" for k in keys]
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        note = " (stopped by ASHA)" if r["early"] else " (failed)" if r["error"] else ""
        lines.append(f"| {r['trial_id']} | " + " | ".join(cells) + f" | {r['epochs']}{note} | {value} | "
                     f"{r['run_id'] or '-'} |")
    return "\n".join(lines) + "\n"


def importances(rows: list[dict], space: dict) -> dict[str, float]:
    """Optuna's parameter importances over the scored trials (``space``: Optuna's distributions); empty when
    there are too few to say."""
    import optuna

    scored = [r for r in rows if r["value"] is not None and set(r["config"]) == set(space)]
    if len(scored) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for r in scored:
        values = {k: (int(v) if SEARCHABLE[k][1] else float(v)) for k, v in r["config"].items()}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=space, value=r["value"]))
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # e.g. every trial scored the same
        return {}


def plot_search(rows: list[dict], weights: dict[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    scored = [(i, r) for i, r in enumerate(rows, start=1) if r["value"] is not None]
    left.scatter([i for i, r in scored if not r["early"]], [r["value"] for _, r in scored if not r["early"]],
                 label="full budget")
    left.scatter([i for i, r in scored if r["early"]], [r["value"] for _, r in scored if r["early"]], marker="x",
                 label="stopped by ASHA")
    best, line = float("-inf"), []
    for _, r in scored:
        best = max(best, r["value"])
        line.append(best)
    left.step([i for i, _ in scored], line, where="post", color="grey", alpha=0.6, label="best so far")
    left.set(title="objective by trial", xlabel="trial", ylabel="val_accuracy")
    left.legend(fontsize="small")
    if weights:
        names = sorted(weights, key=weights.get)
        right.barh([SEARCHABLE[n][0] for n in names], [weights[n] for n in names])
        right.set(title="parameter importance (Optuna)")
    else:
        right.text(0.5, 0.5, "too few trials for importances", ha="center", va="center")
        right.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def log_study(client, parent: str, rows: list[dict], best: dict, space: dict) -> None:
    from mlflow.entities import Metric, RunTag

    best_config = {SEARCHABLE[k][0]: v for k, v in sorted(best["config"].items())}
    model_uri = client.get_run(best["run_id"]).data.tags.get("model.uri", "") if best["run_id"] else ""
    tags = [RunTag(f"best.{k}", str(v)) for k, v in best_config.items()]
    tags += [RunTag("best.run_id", best["run_id"] or ""), RunTag("best.model_uri", model_uri)]
    client.log_batch(parent, metrics=[Metric("best_val_accuracy", best["value"], 0, len(rows)),
                                      Metric("trials", len(rows), 0, len(rows)),
                                      Metric("trials_stopped_early", sum(r["early"] for r in rows), 0, len(rows))],
                     tags=tags)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "best_config.json").write_text(json.dumps(
            {"params": best_config, "val_accuracy": best["value"], "run_id": best["run_id"], "model_uri": model_uri},
            indent=2) + "\n")
        (folder / "trials.md").write_text(trials_table(rows))
        plot_search(rows, importances(rows, space), folder / "search.png")
        client.log_artifacts(parent, str(folder))
