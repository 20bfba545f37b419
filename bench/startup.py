"""Where a local Ray Train job's start-up goes: ``python -m bench.startup [--rounds N] [--out FILE]``.

Each variant runs in a fresh Python process (a fresh local Ray), in interleaved rounds (A B A B ...),
and reports, from the process's own start: imports done, ``ray.init`` done, the trainer's ``fit``
called, and the first training step finished on every worker (a DDP step of the project's model on
random images, so the figure holds worker start, imports, process group and the first all-reduce, and
no data loading or MLflow). Variants:

* ``before``: the local ``ray.init`` of mnist_job/training/driver.py before the start-up work
  (dashboard, metrics, preemption watcher and prestarted workers on), the plain ``TorchTrainer``;
* ``previous``: the local ``ray.init`` of the first round of start-up work (no Ray Train metrics,
  preemption watcher, metrics collection or prestarted workers; dashboard on), the plain ``TorchTrainer``;
* ``local-trainer``: ``previous`` with mnist_job/training/local_trainer.py's trainer (no autoscaling
  coordinator, placement-group cleaner or dataset manager actors);
* ``now``: what ``mnist-job train`` does now on a local cluster: ``ray_cluster.init_ray`` without the
  dashboard (a lone run has no placement-group cleaner to serve) and ``local_trainer.local_torch_trainer``.

Each run has its own Ray temp dir, and the phases inside Ray Train come from Ray's own logs there
(the raylet's worker process starts, the controller's worker-group log lines): controller process
started, worker group start requested, worker actors created, train context (process group) ready,
train function started on every worker, first step finished on every worker.

Run it in a loopback-only namespace like the tests: ``scripts/in-netns.sh .venv/bin/python -m bench.startup``.
Timings on shared cores drift: compare medians within one run only.
"""

from __future__ import annotations

import time

PROCESS_START = time.time()

import argparse  # noqa: E402 (the clock starts before any import)
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

VARIANTS = ("before", "previous", "local-trainer", "now")
WORKERS = 2
# the Ray Train controller's log lines that end each phase of the worker group's start
CONTROLLER_LINES = {"group_start_s": "Attempting to start training worker group",
                    "actors_created_s": "worker actors created in",
                    "context_ready_s": "Train context initialized on workers"}


def first_step(config: dict) -> None:
    """Every worker: one DDP training step of the project's model; notes when it started and finished."""
    started = time.time()
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
    (Path(config["marks"]) / f"rank-{rank}").write_text(json.dumps([started, time.time()]))


PREVIOUS_ENV = {"RAY_TRAIN_METRICS_ENABLED": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
PREVIOUS_SYSTEM_CONFIG = {"enable_metrics_collection": False, "prestart_worker_first_driver": False}


def start_ray(variant: str) -> None:
    import ray

    from mnist_job.core.config import Runtime
    from mnist_job.training import ray_cluster

    if variant == "before":
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)
    elif variant == "now":
        ray_cluster.init_ray(Runtime(project_dir=Path.cwd()), dashboard=False)  # as training/driver.py does
    else:
        os.environ.update(PREVIOUS_ENV)
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
                 _system_config=PREVIOUS_SYSTEM_CONFIG)


def log_time(line: str) -> float:
    """A Ray log line's "2026-11-26 19:43:11,167" (local time) as epoch seconds."""
    stamp = line[line.index("20"):][:23]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000


def ray_phases(logs: Path) -> dict:
    """Absolute times from the session's logs: Python worker processes started (by actor), controller lines."""
    actors = {}
    for out in logs.glob("worker-*.out"):
        lines = out.read_text(errors="replace").splitlines()
        name = next((ln.removeprefix(":actor_name:") for ln in lines if ln.startswith(":actor_name:")), "task")
        actors[int(out.stem.rsplit("-", 1)[1])] = name
    started = {}
    for line in (logs / "raylet.out").read_text(errors="replace").splitlines():
        if "Started worker process with pid" in line:
            pid = int(line.split("with pid ")[1].split()[0])
            started.setdefault(actors.get(pid, "idle"), []).append(log_time(line))
    phases = {"processes": {name: len(times) for name, times in started.items()},
              "controller_process_s": min(started.get("TrainController", [float("nan")])),
              "worker_processes_s": max(started.get("RayTrainWorker", [float("nan")]))}
    records = [json.loads(ln) for p in (logs / "train").glob("ray-train-sys-controller-*.log")
               for ln in p.read_text(errors="replace").splitlines() if ln.startswith("{")]
    for key, marker in CONTROLLER_LINES.items():
        found = sorted(r["timestamp_ns"] / 1e9 for r in records if marker in r.get("message", ""))
        phases[key] = found[0] if found else float("nan")
    return phases


def one(variant: str, storage: Path) -> dict:
    """One start in this process: seconds from the process's start to each point."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # this run's logs, apart from other Rays; short, as Ray's socket paths inside must stay under 108 bytes
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-startup-")
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mnist_job.training.local_trainer import local_torch_trainer

    imported = time.time()
    start_ray(variant)
    initialized = time.time()
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    marks = storage / f"marks-{os.getpid()}"
    marks.mkdir(parents=True)
    if variant == "now":  # the driver's own choice (mnist_job/training/ray_cluster.py: owns_local_cluster)
        from mnist_job.training.ray_cluster import owns_local_cluster

        trainer_class = local_torch_trainer if owns_local_cluster() else TorchTrainer
    else:
        trainer_class = TorchTrainer if variant in ("before", "previous") else local_torch_trainer
    trainer = trainer_class(first_step, train_loop_config={"marks": str(marks)},
                            scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
                            run_config=RunConfig(name=f"startup-{variant}", storage_path=str(storage)))
    fit_called = time.time()
    trainer.fit()
    stamps = [json.loads((marks / f"rank-{r}").read_text()) for r in range(WORKERS)]
    phases = ray_phases(logs)
    node_processes = {kind: [info.process for info in infos]
                      for kind, infos in ray._private.worker._global_node.all_processes.items()}
    shutdown_started = time.time()
    if variant == "now":  # the driver's own shutdown (mnist_job/training/ray_cluster.py)
        from mnist_job.training.ray_cluster import shutdown_local_cluster

        shutdown_local_cluster(ray)
    else:
        ray.shutdown()
    shutdown_s = time.time() - shutdown_started
    exit_codes = {kind: [process.wait(timeout=30) for process in processes] for kind, processes in node_processes.items()}
    shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    points = {"imports_s": imported, "ray_init_s": initialized, "fit_called_s": fit_called,
              **{k: v for k, v in phases.items() if k.endswith("_s")},
              "train_fn_started_s": max(s[0] for s in stamps), "first_step_s": max(s[1] for s in stamps)}
    return {"variant": variant, "processes": phases["processes"], "exit_codes": exit_codes, "shutdown_s": shutdown_s,
            **{key: at - PROCESS_START for key, at in points.items()}, "fit_to_first_step_s": points["first_step_s"] - fit_called}


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


def ratios(runs: list[dict], variants: list[str]) -> dict:
    """Each variant's first_step_s and fit_to_first_step_s over the first variant's, within each round."""
    out = {}
    for key in ("first_step_s", "fit_to_first_step_s"):
        for variant in variants[1:]:
            within = []
            for round_ in sorted({r["round"] for r in runs}):
                pair = {r["variant"]: r[key] for r in runs if r["round"] == round_}
                if variant in pair and variants[0] in pair:
                    within.append(pair[variant] / pair[variants[0]])
            if within:
                out[f"{key.removesuffix('_s')} {variant}/{variants[0]}"] = {
                    "median": statistics.median(within), "min": min(within), "max": max(within), "rounds": len(within)}
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
    variants = args.variants.split(",")
    runs, load = [], [os.getloadavg()]
    for round_ in range(1, args.rounds + 1):
        for variant in variants:
            done = subprocess.run([sys.executable, "-m", "bench.startup", "--one", variant, "--storage",
                                   str(args.storage)], capture_output=True, text=True, timeout=600)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("STARTUP ")]
            if done.returncode or not lines:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"variant {variant} failed (exit {done.returncode})")
            run = {"round": round_, **json.loads(lines[-1].removeprefix("STARTUP "))}
            runs.append(run)
            load.append(os.getloadavg())
            print(f"round {round_} {variant:<14} " + " ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in run.items()
                                                             if k.endswith("_s")) + f"  load {load[-1][0]:.1f}",
                  flush=True)
    summary = {"workers": WORKERS, "cpus": os.cpu_count(), "load_average_1min": [a[0] for a in load], "runs": runs,
               "summary": summarize(runs), "ratios": ratios(runs, variants)}
    for variant, figures in summary["summary"].items():
        f = figures["first_step_s"]
        print(f"{variant:<14} first step on every worker: median {f['median']:.1f} s ({f['min']:.1f}-{f['max']:.1f}), "
              f"{figures['runs']} runs; medians: " + ", ".join(f"{k.removesuffix('_s')} {v['median']:.1f}"
                                                              for k, v in figures.items() if k.endswith("_s")))
    for name, r in summary["ratios"].items():
        print(f"ratio {name} within rounds: median {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f}), {r['rounds']} rounds")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
