"""Compare runs read back from MLflow: the params that differ, metrics with deltas, curves overlaid.

The first run is the reference: every delta is ``run - reference``. Runs are picked by id, as the
last N runs of an experiment, by tag, or against the registered model's ``champion`` alias. The
table and the curves are logged to a new run tagged ``mnist.kind=comparison`` (runs cannot be
re-parented after the fact, so the comparison is a run of its own that names the runs it compared);
comparison and study runs are never picked up as "the last N runs" themselves.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnist_job.core.errors import InvalidInput, ServiceUnavailable
from mnist_job.tracking.client import mlflow_client
from mnist_job.tracking.runs import check_tracking_server, resolve_tracking_uri

KIND_TAG = "mnist.kind"  # comparison | study: runs that did not train a model
COMPARED_TAG = "compare.runs"
CHAMPION_ALIAS = "champion"
# Metrics shown first and in this order; any other metric a run has follows, sorted.
HEADLINE = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_loss", "images_per_s", "epoch_time_s",
            "fit_wall_s")
CURVES = ("val_accuracy", "train_loss", "val_loss")  # per-epoch histories overlaid in the PNG
HIGHER_IS_BETTER = {"test_accuracy", "val_accuracy", "train_accuracy", "images_per_s"}
# Where a run's files went and what it was called differ between any two runs: not worth a row.
BOOKKEEPING = {"train.run_name", "train.output_dir", "train.storage_path", "train.if_finished", "train.max_failures"}


@dataclass(frozen=True)
class RunSummary:
    """What a comparison needs of one run: its identity, params and latest metric values."""

    run_id: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def of(cls, run) -> RunSummary:
        return cls(run.info.run_id, run.info.run_name or run.info.run_id[:8], dict(run.data.params),
                   dict(run.data.metrics))


def _mlflow_errors(action, what: str):
    """``action()``, an unreachable server as exit 3 and a refusal (unknown id) as exit 2 naming ``what``."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        return action()
    except RestException as exc:
        if exc.get_http_status_code() == 404 or exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise InvalidInput(f"{what}: not found in MLflow") from None
        raise
    except MlflowException as exc:
        text = str(exc)
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
            raise InvalidInput(f"{what}: not found in MLflow") from None
        if "Max retries" in text or "Connection" in text:
            raise ServiceUnavailable(f"MLflow did not answer while reading {what}: {text.splitlines()[0]}") from None
        raise


def runs_by_id(client, run_ids: list[str]) -> list[RunSummary]:
    return [RunSummary.of(_mlflow_errors(lambda r=run_id: client.get_run(r), f"run {run_id!r}")) for run_id in run_ids]


def experiment_id(client, name: str) -> str:
    experiment = _mlflow_errors(lambda: client.get_experiment_by_name(name), f"experiment {name!r}")
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise InvalidInput(f"--experiment: no experiment named {name!r} in MLflow")
    return experiment.experiment_id


def trained_runs(client, experiment: str, filter_string: str = "", limit: int = 1000) -> list[RunSummary]:
    """Finished training runs of the experiment, newest first (comparisons and study parents left out)."""
    runs = client.search_runs([experiment_id(client, experiment)], filter_string=filter_string,
                              order_by=["attributes.start_time DESC"], max_results=limit)
    return [RunSummary.of(r) for r in runs if r.info.status == "FINISHED" and KIND_TAG not in r.data.tags]


def last_runs(client, experiment: str, count: int) -> list[RunSummary]:
    if count < 2:
        raise InvalidInput(f"--last: {count}: compare at least 2 runs")
    found = trained_runs(client, experiment)[:count]
    if len(found) < 2:
        raise InvalidInput(f"--last: experiment {experiment!r} has {len(found)} finished run(s); need at least 2")
    return list(reversed(found))  # oldest first: the deltas read as "what changed since"


def runs_by_tag(client, experiment: str, tag: str) -> list[RunSummary]:
    key, sep, value = tag.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--tag: {tag!r}: expected KEY=VALUE")
    escaped = value.replace("'", "\\'")
    found = list(reversed(trained_runs(client, experiment, f"tags.`{key}` = '{escaped}'")))
    if not found:
        raise InvalidInput(f"--tag: no finished run of experiment {experiment!r} has tag {key}={value!r}")
    return found


def champion_run(client, registered_model: str) -> RunSummary:
    """The run behind the registered model's ``champion`` alias."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(registered_model, CHAMPION_ALIAS)
    except MlflowException as exc:
        if "Max retries" in str(exc) or "Connection" in str(exc):
            raise ServiceUnavailable(f"MLflow did not answer while reading the champion: {exc}") from None
        raise InvalidInput(f"--champion: registered model {registered_model!r} has no {CHAMPION_ALIAS!r} alias yet: "
                           "promote a version first, or compare run ids or --last N") from None
    if not version.run_id:
        raise InvalidInput(f"--champion: {registered_model} version {version.version} names no run")
    return runs_by_id(client, [version.run_id])[0]


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"


def _delta(value: float | None, reference: float | None, key: str) -> str:
    if value is None or reference is None:
        return ""
    change = value - reference
    if abs(change) < 5e-5:  # nothing the 4 decimals shown would tell apart
        return " (=)"
    better = (change > 0) == (key in HIGHER_IS_BETTER)
    shown = f"{change:+.4f}" if max(abs(value), abs(reference)) < 100 else f"{change:+,.0f}"  # as the cells
    return f" ({shown}{' better' if better else ' worse'})" if key in HIGHER_IS_BETTER or "loss" in key else f" ({shown})"


def metric_keys(runs: list[RunSummary]) -> list[str]:
    present = set().union(*(r.metrics for r in runs))
    rest = sorted(k for k in present if k not in HEADLINE and "_digit_" not in k)
    return [k for k in HEADLINE if k in present] + rest


def differing_params(runs: list[RunSummary]) -> list[str]:
    keys = sorted(set().union(*(r.params for r in runs)))
    return [k for k in keys if k not in BOOKKEEPING and len({r.params.get(k) for r in runs}) > 1]


def markdown_table(runs: list[RunSummary], labels: list[str] | None = None) -> str:
    """Params that differ, then metrics; every column after the first shows its delta to the first."""
    labels = labels or [f"{r.name} ({r.run_id[:8]})" for r in runs]
    header = "| | " + " | ".join(labels) + " |\n|---|" + "---|" * len(runs) + "\n"
    rows = []
    for key in differing_params(runs):
        rows.append(f"| {key} | " + " | ".join(r.params.get(key, "-") for r in runs) + " |")
    if not rows:
        rows.append("| (params) | " + " | ".join(["same"] * len(runs)) + " |")
    reference = runs[0].metrics
    for key in metric_keys(runs):
        cells = [_cell(r.metrics.get(key)) + (_delta(r.metrics.get(key), reference.get(key), key) if i else "")
                 for i, r in enumerate(runs)]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def plot_curves(client, runs: list[RunSummary], path: Path) -> Path:
    """One figure, one panel per curve metric, every run's per-epoch history overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4))
    for axis, key in zip(axes, CURVES, strict=True):
        for run in runs:
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, key))
            if history:
                axis.plot(*zip(*history, strict=True), marker="o", label=f"{run.name} ({run.run_id[:8]})")
        axis.set(title=key, xlabel="epoch")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def log_comparison(client, experiment: str, runs: list[RunSummary], table: str, curves: Path) -> str:
    """A run of its own holding the table and the curves; returns its id."""
    run = client.create_run(experiment_id(client, experiment), run_name=f"compare-{len(runs)}-runs",
                            tags={KIND_TAG: "comparison", COMPARED_TAG: ",".join(r.run_id for r in runs)})
    client.log_text(run.info.run_id, table, "comparison.md")
    client.log_artifact(run.info.run_id, str(curves))
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


@dataclass(frozen=True)
class Comparison:
    table: str
    curves: Path | None
    logged_run: str | None


def compare(client, runs: list[RunSummary], experiment: str, out_dir: Path | None, log: bool) -> Comparison:
    if len({r.run_id for r in runs}) < 2:
        raise InvalidInput("compare: need at least 2 different runs")
    table = markdown_table(runs)
    with tempfile.TemporaryDirectory() as scratch:
        curves = plot_curves(client, runs, (out_dir or Path(scratch)) / "comparison_curves.png")
        logged = log_comparison(client, experiment, runs, table, curves) if log else None
    if out_dir:
        (out_dir / "comparison.md").write_text(table)
    return Comparison(table, curves if out_dir else None, logged)


def compare_command(params, runtime, run_ids: list[str], champion: bool = False, last: int | None = None,
                    tag: str | None = None, experiment: str | None = None, out_dir: Path | None = None,
                    log: bool = True) -> str:
    """`mnist-job compare`: picks the runs as asked, compares them; returns what is printed."""
    chosen = [name for name, given in (("RUN_ID", run_ids), ("--last", last is not None), ("--tag", tag)) if given]
    if len(chosen) > 1:
        raise InvalidInput(f"compare: pick runs one way: {' and '.join(chosen)} were both given")
    if not chosen and not champion:
        raise InvalidInput("compare: name the runs: RUN_ID..., --last N, --tag KEY=VALUE, or --champion with one of them")
    experiment = experiment or params.mlflow.experiment
    client = connect(resolve_tracking_uri(runtime))
    runs = (runs_by_id(client, run_ids) if run_ids else last_runs(client, experiment, last) if last is not None
            else runs_by_tag(client, experiment, tag) if tag else [])
    if champion:
        best = champion_run(client, params.mlflow.registered_model)
        if not chosen:  # the champion against the newest finished run
            runs = trained_runs(client, experiment, limit=50)[:1]
        runs = [best, *(r for r in runs if r.run_id != best.run_id)]
    result = compare(client, runs, experiment, out_dir, log)
    lines = [result.table]
    if result.logged_run:
        lines.append(f"logged as MLflow run {result.logged_run} (comparison.md, comparison_curves.png)")
    if result.curves:
        lines.append(f"wrote {out_dir / 'comparison.md'} and {result.curves}")
    return "\n".join(lines)


def connect(tracking_uri: str):
    check_tracking_server(tracking_uri)
    # a server that goes away mid-comparison fails in seconds, not after MLflow's long default retries
    return mlflow_client(tracking_uri, fail_fast=True)

