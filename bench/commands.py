"""What a user waits for: ``python -m bench.commands [--rounds 5] [--out DIR] [--set KEY=VALUE ...]``.

Each contender is exactly what a user types, run as a subprocess and timed from exec to exit:
``mnist-job train --preset fast`` and ``mnist-job train`` (the default preset), on the default embedded
backends (a local Ray cluster with its default workers, a SQLite MLflow store, registration). Rounds are
interleaved (round k: every command once, ``train.seed=k``); each run has its own MLflow store, Ray
storage and output folder in a temporary directory, so no run resumes another. ``--set`` adds overrides
to every command (the test runs a subset for one epoch).

For each run it keeps the wall time, the test accuracy (run.json) and the run's phase breakdown as the
run logged it to MLflow (``phase_*_s``, mnist_job/core/phases.py): the epochs' seconds and everything
else ("not training"). With ``--examples-json`` (bench/RESULTS.json of a full ``make bench``, default)
it puts each command's median wall time next to the pytorch/examples recipe's median time to 99%.

Writes ``commands.json`` and ``commands.md`` (the section for bench/RESULTS.md) under ``--out``. Run it
in a loopback-only namespace: ``make bench-commands``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import PROJECT_DIR, write_json
from mnist_job.core.phases import DRIVER_PHASES, WORKER_PHASES

COMMANDS = {
    "cli_fast": ["train", "--preset", "fast"],
    "cli_default": ["train"],
}
MNIST_JOB = Path(sys.executable).with_name("mnist-job")
# as a run goes through them: the driver's before fit, the workers' inside it, the driver's after it
PHASE_ORDER = [*DRIVER_PHASES[:3], "fit", *WORKER_PHASES, *DRIVER_PHASES[4:]]


def run_command(name: str, seed: int, sets: list[str], folder: Path, timeout: float) -> dict:
    """One user command, timed from exec to exit; its accuracy and phases as the run recorded them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"  # the embedded store, in this run's folder
    argv = [str(MNIST_JOB), *COMMANDS[name], "--output-dir", str(folder / "outputs"),
            "--storage-path", str(folder / "ray"), "--set", f"train.seed={seed}",
            *[arg for key_value in sets for arg in ("--set", key_value)]]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    (folder / "command.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{name} (seed {seed}) exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    summary = json.loads((folder / "outputs" / "run.json").read_text())
    phases = logged_phases(env["MLFLOW_TRACKING_URI"], summary["run_id"])
    epochs_s = phases.get("epoch", 0.0)
    return {"command": name, "seed": seed, "wall_s": wall, "test_accuracy": summary["test_accuracy"],
            "registered": summary["registered"], "epochs_s": epochs_s, "not_training_s": wall - epochs_s,
            "phases": phases}


def logged_phases(tracking_uri: str, run_id: str) -> dict[str, float]:
    """Seconds per phase of a finished run, a repeated phase (each epoch) summed over its steps."""
    from mnist_job.core.phases import PREFIX, SUFFIX
    from mnist_job.tracking.client import mlflow_client

    client = mlflow_client(tracking_uri)
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(PREFIX) and k.endswith(SUFFIX)]
    return {key[len(PREFIX):-len(SUFFIX)]: round(sum(m.value for m in client.get_metric_history(run_id, key)), 3)
            for key in keys}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict], examples_time_to_99: float | None) -> dict:
    out = {}
    for name in COMMANDS:
        mine = [r for r in runs if r["command"] == name]
        phase_names = list(dict.fromkeys(p for r in mine for p in r["phases"]))
        wall = spread([r["wall_s"] for r in mine])
        out[name] = {
            "argv": ["mnist-job", *COMMANDS[name]], "rounds": len(mine), "wall_s": wall,
            "epochs_s": spread([r["epochs_s"] for r in mine]),
            "not_training_s": spread([r["not_training_s"] for r in mine]),
            "mean_test_accuracy": statistics.fmean(r["test_accuracy"] for r in mine),
            "phases_median_s": {p: statistics.median(r["phases"].get(p, 0.0) for r in mine) for p in phase_names},
            "examples_time_to_99_over_wall": examples_time_to_99 / wall["median"] if examples_time_to_99 else None,
        }
    return out


def examples_reference(path: Path) -> float | None:
    """The pytorch/examples recipe's median time to 99% in a full run's results, if there is one."""
    if not path.is_file():
        return None
    summary = json.loads(path.read_text()).get("summary", {})
    figure = summary.get("contenders", {}).get("examples", {}).get("time_to_target_s")
    return figure.get("median") if isinstance(figure, dict) else None


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    lines = [
        f"## What a user waits for: `mnist-job train`, exec to exit ({result['started'][:10]})",
        "",
        f"`make bench-commands` (`python -m bench.commands`): each command exactly as a user types it, a "
        f"subprocess timed from exec to exit, on the embedded defaults (local Ray, SQLite MLflow, registration); "
        f"{result['rounds']} interleaved rounds (seed k in round k); medians (min-max). \"Not training\": the wall "
        f"time less the epochs' seconds (rank 0's `phase_epoch_s`). {m['cpus']} CPUs, load average before "
        f"{m['loadavg_before'][0]:.2f}." + (f" Overrides: `{' '.join(result['sets'])}`." if result["sets"] else ""),
        "",
        "| command | wall (s) | epochs (s) | not training (s) | mean test acc (%) | examples' time to 99% / wall |",
        "|---|---|---|---|---:|---:|",
    ]
    for s in result["summary"].values():
        ratio = s["examples_time_to_99_over_wall"]
        lines.append(f"| `{' '.join(s['argv'])}` | {_s(s['wall_s'])} | {_s(s['epochs_s'])} | "
                     f"{_s(s['not_training_s'])} | {100 * s['mean_test_accuracy']:.2f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "Phases (median seconds over the rounds; fit holds the workers' phases, from workers ready to "
              "register):", ""]
    for s in result["summary"].values():
        phases = sorted(s["phases_median_s"].items(), key=lambda item: PHASE_ORDER.index(item[0])
                        if item[0] in PHASE_ORDER else len(PHASE_ORDER))
        shown = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f}" for name, seconds in phases)
        lines.append(f"- `{' '.join(s['argv'])}`: {shown}")
    path.write_text("\n".join(lines) + "\n")


def _s(figure: dict) -> str:
    return f"{figure['median']:.1f} ({figure['min']:.1f}-{figure['max']:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "bench" / "results")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every command (repeatable)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    parser.add_argument("--examples-json", type=Path, default=PROJECT_DIR / "bench" / "RESULTS.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not (PROJECT_DIR / "data" / "mnist" / "manifest.json").is_file():
        raise SystemExit("data/mnist is not prepared: run `make data` first")
    started, loadavg = datetime.now(UTC).isoformat(timespec="seconds"), os.getloadavg()
    runs = []
    for seed in range(1, args.rounds + 1):
        for name in COMMANDS:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
                run = run_command(name, seed, args.sets, Path(tmp), args.timeout)
            runs.append(run)
            print(f"round {seed} {name:<11} wall {run['wall_s']:6.1f} s, epochs {run['epochs_s']:6.1f} s, "
                  f"not training {run['not_training_s']:5.1f} s, test acc {run['test_accuracy']:.4f}", flush=True)
    result = {"started": started, "rounds": args.rounds, "sets": args.sets,
              "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg, "loadavg_after": os.getloadavg()},
              "runs": runs, "summary": summarize(runs, examples_reference(args.examples_json))}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "commands.json", result)
    write_markdown(result, args.out / "commands.md")
    print((args.out / "commands.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
