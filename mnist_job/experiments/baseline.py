"""The CI report: one small, fixed training run compared with a baseline committed in the repository.

The baseline file (bench/ci-baseline.json) holds the configuration (``--set`` overrides on top of
params.yaml), the metrics a run of it gave, and the tolerance of each metric; configuration and
numbers sit in one file so they cannot drift apart. ``mnist-job ci-report`` trains that configuration
(or reads a finished run with ``--run``), prints the comparison table and one verdict line per metric.
Only a test-accuracy drop beyond its tolerance fails the command (exit 1): the run is seeded and the
same code gives the same accuracy within a fraction of a percent, so a larger drop is a regression
someone must look at. Speed and time metrics are printed but never fail it: on shared CPUs they drift
by tens of percent between runs. ``--refresh`` (``make ci-baseline``) trains and rewrites the file,
printing old against new; the change then shows in the commit, never silently.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mnist_job.core.config import load_params
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.paths import FileOutput, check_outputs
from mnist_job.experiments.compare import RunSummary, connect, markdown_table, runs_by_id
from mnist_job.tracking.runs import resolve_tracking_uri
from mnist_job.training.driver import run_training
from mnist_job.training.planning import TRAIN_OUTPUTS

DEFAULT_FILE = "bench/ci-baseline.json"
# The fixed configuration CI trains when the baseline file does not name one: seconds, not minutes.
DEFAULT_CONFIG = [
    "data.train_subset=12000", "data.validation_size=2000", "data.test_subset=2000", "train.epochs=1",
    "train.num_workers=2", "model.width=16", "train.output_dir=outputs/ci",
    "train.storage_path=outputs/ci/ray", "mlflow.experiment=ci", "mlflow.register_min_accuracy=1.0",
]
# metric -> allowed change (abs: absolute, rel: a fraction of the baseline, both: summed), gate: may fail CI
DEFAULT_TOLERANCES = {
    "test_accuracy": {"abs": 0.01, "gate": True},
    "test_loss": {"abs": 0.05, "gate": False},
    "val_accuracy": {"abs": 0.01, "gate": False},
    "images_per_s": {"rel": 0.5, "gate": False},
    "fit_wall_s": {"rel": 0.5, "gate": False},
}
HIGHER_IS_BETTER = {"test_accuracy", "val_accuracy", "images_per_s"}
ABOUT = "CI report baseline: `make ci-baseline` rewrites it; mnist_job/experiments/baseline.py"


def is_baseline_file(path: Path) -> bool:
    """Whether the file at ``path`` is a baseline ``--refresh`` wrote (its ``about`` line), which it may replace."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and str(document.get("about", "")).startswith(ABOUT.split(":")[0])


BASELINE_FILE = FileOutput("a baseline written by `mnist-job ci-report --refresh`", is_baseline_file)


@dataclass(frozen=True)
class Baseline:
    config: list[str]
    params: dict[str, str]
    metrics: dict[str, float]
    tolerances: dict[str, dict]
    made: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Baseline:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidInput(f"--baseline: {path} does not exist; make one with `make ci-baseline`") from None
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"--baseline: {path} is not a readable JSON file: {exc}") from None
        problems = [f"--baseline: {path}: missing {key!r}" for key in ("config", "metrics", "tolerances")
                    if not isinstance(data.get(key), list if key == "config" else dict)]
        if problems:
            raise InvalidInput(problems)
        for name, rule in data["tolerances"].items():
            if not isinstance(rule, dict) or not (set(rule) & {"abs", "rel"}):
                problems.append(f"--baseline: {path}: tolerances.{name} needs 'abs' or 'rel'")
            elif any(not isinstance(rule.get(k, 0), int | float) or rule.get(k, 0) < 0 for k in ("abs", "rel")):
                problems.append(f"--baseline: {path}: tolerances.{name} must be a number >= 0")
        if problems:
            raise InvalidInput(problems)
        return cls(data["config"], data.get("params", {}), data["metrics"], data["tolerances"], data.get("made", {}))

    def write(self, path: Path) -> None:
        body = {"about": ABOUT,
                "config": self.config, "metrics": self.metrics, "tolerances": self.tolerances, "made": self.made,
                "params": self.params}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")


def verdicts(baseline: Baseline, metrics: dict[str, float]) -> tuple[list[str], bool]:
    """One line per metric with a tolerance, and whether a gating metric fell outside its tolerance."""
    lines, failed = [], False
    for key, rule in baseline.tolerances.items():
        expected, got = baseline.metrics.get(key), metrics.get(key)
        if expected is None or got is None:
            lines.append(f"{key}: not compared ({'baseline' if expected is None else 'this run'} has no value)")
            continue
        allowed = rule.get("abs", 0.0) + rule.get("rel", 0.0) * abs(expected)
        change = got - expected
        worse = change < 0 if key in HIGHER_IS_BETTER else change > 0
        if abs(change) <= allowed:
            lines.append(f"{key}: {got:.4g} within tolerance of the baseline {expected:.4g} (±{allowed:.3g})")
            continue
        gate = bool(rule.get("gate")) and worse
        failed |= gate
        direction = "worse" if worse else "better"
        consequence = ("fails CI" if gate else "reported only") + ("" if worse else "; refresh: make ci-baseline")
        lines.append(f"{key}: OUTSIDE TOLERANCE: {got:.4g} is {abs(change):.3g} {direction} than the baseline "
                     f"{expected:.4g} (tolerance ±{allowed:.3g}; {consequence})")
    return lines, failed


def _train(config: list[str], runtime) -> str:
    params_file = runtime.project_dir / "params.yaml"
    params = load_params(params_file if params_file.is_file() else None, config)
    check_outputs(TRAIN_OUTPUTS, None, params, runtime)
    return run_training(params, runtime).run_id


def ci_report(runtime, baseline_path: Path, run_id: str | None = None, refresh: bool = False) -> tuple[str, int]:
    """(what to print, exit code): the table of the baseline against this run and one verdict per metric."""
    old = Baseline.read(baseline_path) if baseline_path.is_file() or not refresh else None
    config = old.config if old else DEFAULT_CONFIG
    run_id = run_id or _train(config, runtime)
    client = connect(resolve_tracking_uri(runtime))
    run = runs_by_id(client, [run_id])[0]
    if run.metrics.get("test_accuracy") is None:
        raise JobError(f"run {run_id} has no test_accuracy: it did not finish its final evaluation")
    out = []
    if refresh:
        made = {"git_commit": client.get_run(run_id).data.tags.get("git.commit", "unknown"),
                "run_id": run_id, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
        tolerances = old.tolerances if old else DEFAULT_TOLERANCES
        new = Baseline(config, run.params, {k: round(v, 6) for k, v in sorted(run.metrics.items()) if k in tolerances},
                       tolerances, made)
        if old:
            out.append(_table(old, run, "old baseline", "new baseline"))
        new.write(baseline_path)
        out.append(f"wrote {baseline_path} from run {run_id}: commit it so CI compares against it")
        return "\n".join(out), 0
    out.append(_table(old, run, "baseline", f"this run ({run_id[:8]})"))
    lines, failed = verdicts(old, run.metrics)
    out.extend(lines)
    outside = sum("OUTSIDE TOLERANCE" in line for line in lines)
    out.append("ci-report: FAILED: test accuracy fell below the baseline beyond its tolerance" if failed
               else f"ci-report: ok, {outside} metric(s) outside tolerance, reported only" if outside
               else "ci-report: ok, every metric within tolerance")
    return "\n".join(out), 1 if failed else 0


def _table(baseline: Baseline, run: RunSummary, left: str, right: str) -> str:
    reference = RunSummary("baseline", "baseline", baseline.params, baseline.metrics)
    shown = RunSummary(run.run_id, run.name, run.params, {k: v for k, v in run.metrics.items()
                                                          if k in baseline.tolerances})
    return markdown_table([reference, shown], [left, right])
