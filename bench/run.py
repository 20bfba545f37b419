"""`make bench` / `make bench-quick`: the contenders in interleaved rounds, one seed per round.

    python -m bench.run --rounds 5     # full: whole dataset, every contender's fixed maximum schedule
                                       # (examples, the DataLoader reference, in rounds 1-3 only: --reference-rounds)
    python -m bench.run --quick        # CI: 2 rounds on a subset, one epoch, an 80% target

Round k: a GEMM sample, then every contender once with seed k, each in its own process, in the
fixed order of bench/contenders.py's CONTENDERS, then a second GEMM sample, then "dataset ready on
a worker". bench/summary.py turns the rounds into figures (drifted rounds out of timings and
ratios); bench/report.py writes OUT/RESULTS.{json,md,png}, after every round, atomically.
Must run where Ray can start (inside `unshare -n` here: the make targets use scripts/in-netns.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PROJECT_DIR, gemm_gflops
from bench.contenders import CONTENDERS
from bench.memory import TreePssSampler
from bench.summary import run_figures, summarise, targets

FULL = {"train_subset": 0, "validation_size": 5000, "test_subset": 0, "project_epochs": 0, "examples_epochs": 5,
        "target": 0.99, "default_target": 0.994}
QUICK = {"train_subset": 10000, "validation_size": 1000, "test_subset": 2000, "project_epochs": 1,
         "examples_epochs": 1, "target": 0.80, "default_target": 0.80}


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def run_child(module_args: list[str], log: Path, timeout: float) -> tuple[int, float, dict]:
    """``python -m ...`` in its own process group; (exit code, when it started, its tree's PSS figures)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("RAY_ADDRESS", None)
    with log.open("w") as fh:
        started_at = time.time()
        proc = subprocess.Popen([sys.executable, "-m", *module_args], cwd=PROJECT_DIR, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        with TreePssSampler(proc.pid) as sampler:
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = -9
    try:  # what the child left behind (Ray's processes after a crash or a timeout): its own group only
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return code, started_at, sampler.figures()


def machine_facts(threads: int) -> dict:
    import torch

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or platform.machine())
    return {"cpus": os.cpu_count(), "threads": threads, "cpu_model": model, "torch": torch.__version__,
            "python": platform.python_version(), "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}


def one_round(k: int, names: list[str], cfg: dict, args, logs: Path) -> dict:
    rnd = {"round": k, "seed": k, "runs": {}, "failed": {}, "loadavg_before": os.getloadavg()[0]}
    before = gemm_gflops(args.threads, seconds=args.gemm_seconds)
    say(f"round {k}: gemm before {before:.1f} GFLOP/s")
    raws = {}
    for name in names:
        if name == "examples" and k > args.reference_rounds:
            continue  # its accuracy is examples_preloaded's (bench/summary.py: SAME_RECIPE); its time needs 3 rounds
        raw_path, log = logs / f"round{k}-{name}.json", logs / f"round{k}-{name}.log"
        raw_path.unlink(missing_ok=True)
        code, started_at, memory = run_child(["bench.contenders", name, json.dumps({**cfg, "seed": k}), str(raw_path)],
                                             log, args.timeout)
        if code != 0 or not raw_path.is_file():
            rnd["failed"][name] = f"exit {code}; see {log}"
            say(f"round {k}: {name} FAILED ({rnd['failed'][name]})")
            continue
        raws[name] = (json.loads(raw_path.read_text()), started_at, memory)
    after = gemm_gflops(args.threads, seconds=args.gemm_seconds)
    rnd["gemm_gflops"] = [before, after]
    for name, (raw, started_at, memory) in raws.items():
        rnd["runs"][name] = {**run_figures(raw, started_at, (before + after) / 2), **memory}
        f = rnd["runs"][name]
        say(f"round {k}: {name}: wall {f['wall_s']:.1f} s, recipe {f['recipe_s']:.1f} s, "
            f"final test acc {f['final_test_accuracy']:.4f}, {f['images_per_s']:.0f} images/s, "
            f"PSS {f['pss_peak_mb']:.0f} MB")
    if not args.skip_dataset:
        path, log = logs / f"round{k}-dataset_ready.json", logs / f"round{k}-dataset_ready.log"
        code, _, _ = run_child(["bench.dataset_ready", "1", str(path)], log, 600)
        if code == 0 and path.is_file():
            rnd["dataset_ready_s"] = json.loads(path.read_text())["seconds"]
            rnd["dataset_ready"] = json.loads(path.read_text())["runs"][0]
        else:
            rnd["failed"]["dataset_ready"] = f"exit {code}; see {log}"
    say(f"round {k}: gemm after {after:.1f} GFLOP/s")
    return rnd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds on a subset, one epoch, 80%% target (CI)")
    ap.add_argument("--rounds", type=int, help="rounds = seeds 1..R (default 5; quick: 2)")
    ap.add_argument("--out", type=Path, help="RESULTS.{json,md,png} here (default bench/; quick: bench/results/quick)")
    ap.add_argument("--logs", type=Path, help="contenders' logs and raw JSON (default OUT/logs, or bench/results/logs)")
    ap.add_argument("--only", nargs="*", choices=list(CONTENDERS), help="run only these contenders")
    ap.add_argument("--examples-epochs", type=int, help="epochs of examples and examples_preloaded (default 5)")
    ap.add_argument("--reference-rounds", type=int, default=3,
                    help="rounds in which `examples` runs (default 3: its per-sample DataLoader is about half of a "
                         "round; its schedule uses examples_preloaded's seeds too)")
    ap.add_argument("--skip-dataset", action="store_true", help="skip the dataset-ready measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="cores for every contender (default: all)")
    ap.add_argument("--gemm-seconds", type=float, default=3.0, help="length of each GEMM sample")
    ap.add_argument("--timeout", type=float, default=7200, help="per-contender limit in seconds")
    args = ap.parse_args(argv)

    cfg = {**(QUICK if args.quick else FULL), "threads": args.threads}
    if args.examples_epochs:
        cfg["examples_epochs"] = args.examples_epochs
    rounds_n = args.rounds or (2 if args.quick else 5)
    out = args.out or PROJECT_DIR / ("bench/results/quick" if args.quick else "bench")
    logs = args.logs or (PROJECT_DIR / "bench/results/logs" if out.resolve() == (PROJECT_DIR / "bench").resolve()
                         else out / "logs")
    logs.mkdir(parents=True, exist_ok=True)
    names = args.only or list(CONTENDERS)
    say(f"{'quick' if args.quick else 'full'} run: {rounds_n} rounds of {', '.join(names)}; threads={args.threads}, "
        f"target={cfg['target']}; results in {out}, logs in {logs}")
    result = {"mode": "quick" if args.quick else "full", "config": cfg, "contender_names": names,
              "descriptions": {n: CONTENDERS[n] for n in names}, "machine": machine_facts(args.threads),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": []}
    t0 = time.time()
    from bench.report import write_all

    for k in range(1, rounds_n + 1):
        result["rounds"].append(one_round(k, names, cfg, args, logs))
        result["summary"] = summarise(result["rounds"], names, cfg["target"])
        result["targets"] = targets(result["summary"], cfg["default_target"])
        result["wall_s"], result["complete"] = time.time() - t0, k == rounds_n
        result["failures"] = {f"round {r['round']}: {n}": m for r in result["rounds"] for n, m in r["failed"].items()}
        write_all(result, out)  # after every round: a run cut short keeps what it finished
    say(f"wrote {out / 'RESULTS.json'}, RESULTS.md, RESULTS.png in {result['wall_s']:.0f} s")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
