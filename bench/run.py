"""`make bench` / `make bench-quick`: every contender in one run, on the same cores and test set.

    python -m bench.run            # full: whole dataset, train until 99.0% test accuracy
    python -m bench.run --quick    # CI: a subset, one epoch, an 80% target (keeps the harness working)

Order: GEMM, then each contender in its own process (GEMM again after each, so every
contender is compared with the matmul speed measured next to it: speeds drift on
these machines), then "dataset ready on a worker". Writes OUT/latest.{json,md,png}
and the contenders' logs. Must run where Ray can start (inside `unshare -n` here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PROJECT_DIR, TRAIN_FLOPS_PER_FORWARD, TreeRssSampler, gemm_gflops, time_to_target, write_json

CONTENDERS = {
    "examples": "pytorch/examples recipe (DataLoader, Adadelta, batch 64)",
    "project_single": "project model + recipe, one process, no Ray",
    "ray_1": "project Ray Train job, 1 worker",
    "ray_2": "project Ray Train job, 2 workers",
}
FULL = {"train_subset": 0, "validation_size": 5000, "test_subset": 0, "project_epochs": 0,
        "examples_max_epochs": 14, "target": 0.99, "stop_at_target": True, "dataset_repeats": 3}
QUICK = {"train_subset": 10000, "validation_size": 1000, "test_subset": 2000, "project_epochs": 1,
         "examples_max_epochs": 1, "target": 0.80, "stop_at_target": True, "dataset_repeats": 1}
TARGETS = {"speedup_vs_examples_time_to_99": 4.0, "ray_overhead_vs_single_process": 1.15,
           "gemm_fraction": 0.40, "dataset_ready_s": 3.0}


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def run_child(module_args: list[str], log: Path, timeout: float) -> tuple[int, float, int]:
    """Run ``python -m ...`` as its own process; (exit code, peak tree RSS in MB, processes at peak)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("RAY_ADDRESS", None)
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", *module_args], cwd=PROJECT_DIR, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        with TreeRssSampler(proc.pid) as sampler:
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                import signal

                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = -9
    # Ray may leave its own process group behind on a crash: end what this child started, by its group
    try:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return code, sampler.peak_mb, sampler.peak_processes


def summarise(name: str, raw: dict, rss_mb: float, processes: int, gemm: float, target: float) -> dict:
    epochs = raw["epochs"]
    t_target, e_target = time_to_target(epochs, target)
    images = sum(e["images"] for e in epochs)
    train_s = sum(e["train_s"] for e in epochs)
    ips = images / train_s
    flops = raw["flops_per_image_forward"]
    achieved = TRAIN_FLOPS_PER_FORWARD * flops * ips / 1e9
    out = {
        "description": CONTENDERS[name],
        "time_to_99_s": t_target if target == 0.99 else None,
        "time_to_target_s": t_target,
        "epochs_to_target": e_target,
        "train_images_per_s": ips,
        "peak_rss_mb": rss_mb,
        "peak_rss_processes": processes,
        "gemm_fraction": achieved / gemm,
        "train_gflops": achieved,
        "gemm_gflops_adjacent": gemm,
        "flops_per_image_forward": flops,
        "final_test_accuracy": epochs[-1]["test_accuracy"],
        "best_test_accuracy": max(e["test_accuracy"] for e in epochs),
        "epochs": epochs,
    }
    for key in ("startup", "workers", "threads", "threads_per_worker", "recipe", "test_accuracy_job"):
        if key in raw:
            out[key] = raw[key]
    if "startup" in raw:
        out["startup_s"] = raw["startup"]["until_first_epoch_s"]
        out["compute_time_to_target_s"] = next(
            (e["compute_elapsed_s"] for e in epochs if e["test_accuracy"] >= target), None)
    return out


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="subset, one epoch, 80%% target (CI)")
    ap.add_argument("--out", type=Path, default=PROJECT_DIR / "bench" / "results")
    ap.add_argument("--only", nargs="*", choices=list(CONTENDERS), help="run only these contenders")
    ap.add_argument("--skip-dataset", action="store_true", help="skip the dataset-ready measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="cores for every contender (default: all)")
    ap.add_argument("--timeout", type=float, default=3600, help="per-contender limit in seconds")
    args = ap.parse_args(argv)

    cfg = {**(QUICK if args.quick else FULL), "threads": args.threads}
    out = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_before = os.getloadavg()
    say(f"{'quick' if args.quick else 'full'} run: threads={args.threads}, target={cfg['target']}, results in {out}")

    gemm_samples = [gemm_gflops(args.threads)]
    say(f"gemm: {gemm_samples[-1]:.1f} GFLOP/s on {args.threads} threads")
    contenders, failures = {}, {}
    for name in args.only or list(CONTENDERS):
        raw_path = logs / f"{name}.json"
        raw_path.unlink(missing_ok=True)
        say(f"{name}: {CONTENDERS[name]} (log: {logs / (name + '.log')})")
        t0 = time.time()
        code, rss, procs = run_child(["bench.contenders", name, json.dumps(cfg), str(raw_path)],
                                     logs / f"{name}.log", args.timeout)
        gemm_samples.append(gemm_gflops(args.threads))
        if code != 0 or not raw_path.is_file():
            failures[name] = f"exit {code}; see {logs / (name + '.log')}"
            say(f"{name}: FAILED ({failures[name]})")
            continue
        raw = json.loads(raw_path.read_text())
        gemm = (gemm_samples[-2] + gemm_samples[-1]) / 2
        contenders[name] = summarise(name, raw, rss, procs, gemm, cfg["target"])
        c = contenders[name]
        say(f"{name}: done in {time.time() - t0:.0f} s: time_to_target={c['time_to_target_s']}, "
            f"images/s={c['train_images_per_s']:.0f}, peak_rss={c['peak_rss_mb']:.0f} MB, "
            f"gemm_fraction={c['gemm_fraction']:.3f} (gemm {gemm_samples[-1]:.1f} GFLOP/s)")

    dataset = None
    if not args.skip_dataset:
        ds_path = logs / "dataset_ready.json"
        code, _, _ = run_child(["bench.dataset_ready", str(cfg["dataset_repeats"]), str(ds_path)],
                               logs / "dataset_ready.log", 600)
        if code == 0 and ds_path.is_file():
            dataset = json.loads(ds_path.read_text())
            dataset["target_s"] = TARGETS["dataset_ready_s"]
            say(f"dataset ready on a worker: {dataset['seconds']:.2f} s (median of {len(dataset['runs'])})")
        else:
            failures["dataset_ready"] = f"exit {code}; see {logs / 'dataset_ready.log'}"

    # ratios: the project's single process is the basis for the speed-up; the best project contender is also given
    t = {n: c["time_to_target_s"] for n, c in contenders.items()}
    project = {n: v for n, v in t.items() if n != "examples" and v is not None}
    best_project = min(project, key=project.get) if project else None
    fractions = {n: c["gemm_fraction"] for n, c in contenders.items() if n != "examples"}
    best_fraction = max(fractions, key=fractions.get) if fractions else None
    ray2_compute = contenders.get("ray_2", {}).get("compute_time_to_target_s")
    ratios = {
        "accuracy_target": cfg["target"],
        "speedup_vs_examples_time_to_99": ratio(t.get("examples"), t.get("project_single")),
        "speedup_basis": "examples time_to_target / project_single time_to_target",
        "speedup_vs_examples_best_project": ratio(t.get("examples"), t.get(best_project)),
        "best_project_contender": best_project,
        "ray_overhead_vs_single_process": ratio(t.get("ray_2"), t.get("project_single")),
        "ray_overhead_basis": "ray_2 wall time from its first epoch's start (start-up excluded; checkpointing and "
                              "MLflow logging between epochs included) / project_single time_to_target",
        "ray_overhead_compute_only": ratio(ray2_compute, t.get("project_single")),
        "ray_1_overhead_vs_single_process": ratio(t.get("ray_1"), t.get("project_single")),
        "gemm_fraction": fractions.get(best_fraction),
        "gemm_fraction_basis": best_fraction,
    }
    checks = {
        "speedup_vs_examples_time_to_99": (ratios["speedup_vs_examples_time_to_99"], ">=", 4.0),
        "ray_overhead_vs_single_process": (ratios["ray_overhead_vs_single_process"], "<=", 1.15),
        "gemm_fraction": (ratios["gemm_fraction"], ">=", 0.40),
        "dataset_ready_s": (dataset["seconds"] if dataset else None, "<=", 3.0),
    }
    targets = {k: {"value": v, "target": f"{op} {lim}",
                   "met": None if v is None else (v >= lim if op == ">=" else v <= lim)}
               for k, (v, op, lim) in checks.items()}
    import torch

    result = {
        "mode": "quick" if args.quick else "full",
        "config": cfg,
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": time.time() - started,
        "gemm": {"gflops_samples": gemm_samples, "n": 2048, "threads": args.threads,
                 "note": "measured before the first contender and after each; each contender uses the mean of "
                         "the two samples around it"},
        "contenders": contenders,
        "dataset_ready": dataset,
        "ratios": ratios,
        "targets": targets,
        "failures": failures,
    }
    write_json(out / "latest.json", result)
    from bench.report import write_markdown, write_plot

    write_markdown(result, out / "latest.md")
    write_plot(result, out / "latest.png")
    say(f"wrote {out / 'latest.json'}, latest.md, latest.png in {result['wall_s']:.0f} s")
    print((out / "latest.md").read_text(), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
