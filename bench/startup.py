"""Where a local Ray Train job's start-up goes: ``python -m bench.startup [--rounds N] [--out FILE]``.

Each variant runs in a fresh Python process (a fresh local Ray), in interleaved rounds (A B A B ...),
and reports, from the process's own start: imports done, ``ray.init`` done, the trainer's ``fit``
called, and the first training step finished on every worker (a DDP step of the project's model on
random images, so the figure holds worker start, imports, process group and the first all-reduce, and
no data loading or MLflow). Variants:

* ``before``: the local ``ray.init`` of mnist_job/training/driver.py before the start-up work
  (dashboard, metrics, preemption watcher and prestarted workers on);
* ``now``: ``mnist_job.training.driver.init_ray`` as it is;
* ``now-no-dashboard``: the same without the dashboard (what the dashboard costs).

Run it in a loopback-only namespace like the tests: ``scripts/in-netns.sh .venv/bin/python -m bench.startup``.
Timings on shared cores drift: compare medians within one run only.
"""

from __future__ import annotations

import time

PROCESS_START = time.time()

import argparse  # noqa: E402 (the clock starts before any import)
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

VARIANTS = ("before", "now", "now-no-dashboard")
WORKERS = 2


def first_step(config: dict) -> None:
    """Every worker: one DDP training step of the project's model; reports when it finished."""
    import ray.train
    import ray.train.torch
    import torch

    from mnist_job.model.network import build_model
    from mnist_job.training.loop import run_epoch  # noqa: F401 (the job's worker imports this module)

    torch.set_num_threads(1)
    model = ray.train.torch.prepare_model(build_model(32, 0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(model(x), torch.zeros(128, dtype=torch.int64))
    loss.backward()  # DDP: the first all-reduce, so every rank has started when any finishes
    optimizer.step()
    # a file per rank: this is a local run, and Train V2 hands the driver no checkpoint-less metrics
    rank = ray.train.get_context().get_world_rank()
    (Path(config["marks"]) / f"rank-{rank}").write_text(str(time.time()))


def start_ray(variant: str) -> None:
    import ray

    from mnist_job.core.config import Runtime
    from mnist_job.training import driver

    if variant == "before":
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)
    elif variant == "now":
        driver.init_ray(Runtime(project_dir=Path.cwd()))
    else:
        for name, value in driver.LOCAL_RAY_ENV.items():
            os.environ.setdefault(name, value)
        ray.init(address="local", include_dashboard=False, log_to_driver=True,
                 _system_config=driver.LOCAL_RAY_SYSTEM_CONFIG)


def one(variant: str, storage: Path) -> dict:
    """One start in this process: seconds from the process's start to each point."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    imported = time.time()
    start_ray(variant)
    initialized = time.time()
    marks = storage / f"marks-{os.getpid()}"
    marks.mkdir(parents=True)
    trainer = TorchTrainer(first_step, train_loop_config={"marks": str(marks)}, scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
                           run_config=RunConfig(name=f"startup-{variant}", storage_path=str(storage)))
    fit_called = time.time()
    trainer.fit()
    stamps = [float((marks / f"rank-{r}").read_text()) for r in range(WORKERS)]
    last = max(stamps)  # the first step has finished on every worker
    return {"variant": variant, "imports_s": imported - PROCESS_START, "ray_init_s": initialized - imported,
            "until_fit_s": fit_called - PROCESS_START,
            "until_first_step_s": last - PROCESS_START,
            "fit_to_first_step_s": last - fit_called}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        out[variant] = {key: {"median": statistics.median(r[key] for r in mine), "min": min(r[key] for r in mine),
                              "max": max(r[key] for r in mine)}
                        for key in mine[0] if key.endswith("_s")}
        out[variant]["runs"] = len(mine)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--storage", type=Path, default=Path("/tmp/bench-startup"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("STARTUP " + json.dumps(one(args.one, args.storage)), flush=True)
        return 0
    runs = []
    for round_ in range(1, args.rounds + 1):
        for variant in args.variants.split(","):
            done = subprocess.run([sys.executable, "-m", "bench.startup", "--one", variant, "--storage",
                                   str(args.storage)], capture_output=True, text=True, timeout=600)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("STARTUP ")]
            if done.returncode or not lines:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"variant {variant} failed (exit {done.returncode})")
            run = {"round": round_, **json.loads(lines[-1].removeprefix("STARTUP "))}
            runs.append(run)
            print(f"round {round_} {variant:<17} imports {run['imports_s']:5.1f} s  ray.init {run['ray_init_s']:5.1f} s  "
                  f"first step on every worker {run['until_first_step_s']:5.1f} s after the process started "
                  f"({run['fit_to_first_step_s']:.1f} s after fit)", flush=True)
    summary = {"workers": WORKERS, "cpus": os.cpu_count(), "load_average": os.getloadavg(), "runs": runs,
               "summary": summarize(runs)}
    for variant, figures in summary["summary"].items():
        f = figures["until_first_step_s"]
        print(f"{variant:<17} first step on every worker: median {f['median']:.1f} s ({f['min']:.1f}-{f['max']:.1f}), "
              f"ray.init median {figures['ray_init_s']['median']:.1f} s, {figures['runs']} runs")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
