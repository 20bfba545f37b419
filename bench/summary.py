"""From the rounds of `make bench` to its figures: drift filter, fixed schedules, medians, ratios, targets.

Pure functions of the round records that bench/run.py writes (no timing, no processes), so the
rules are tested on made-up rounds (tests/bench/test_bench_summary.py):

* a round is **drifted** when its two GEMM samples (before its first contender, after its last)
  differ by more than ``DRIFT_LIMIT`` of the smaller one; drifted rounds are left out of every timing
  figure and ratio, kept for accuracy and memory (neither depends on the machine's speed);
* a contender's **fixed schedule** is the first epoch count whose MEAN test accuracy over all its
  seeds reaches the target; its time to target is, per round, the cumulative recipe time to that
  epoch (so every seed's time is the same schedule's, not the first lucky epoch's);
* **ratios** are taken within a round, then summarised as median and min-max over the kept rounds;
* ``examples`` and ``examples_preloaded`` are one recipe on two data paths (same seed, batches and
  dropout draws: tests/bench/test_bench_quick.py checks their accuracies match), so the schedule of
  ``examples`` is set by the seeds of both: ``examples`` may run in fewer rounds (bench/run.py's
  ``--reference-rounds``), as it costs more than every other contender together.
"""

from __future__ import annotations

import statistics

DRIFT_LIMIT = 0.10
TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (about 2x forward) per training image


def gemm_drift(before: float, after: float) -> float:
    return abs(after - before) / min(before, after)


def spread(values) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run_figures(raw: dict, started_at: float, gemm_gflops: float) -> dict:
    """One contender's run in one round: its epochs plus the figures derived from them."""
    epochs = raw["epochs"]
    train_s = sum(e["train_s"] for e in epochs)
    images = sum(e["images"] for e in epochs)
    ips = images / train_s
    achieved = TRAIN_FLOPS_PER_FORWARD * raw["flops_per_image_forward"] * ips / 1e9
    out = {
        "seed": raw["seed"],
        "epochs": epochs,
        "recipe_s": epochs[-1]["elapsed_s"],
        # what a user waits: process start to the model written, the benchmark's test scoring taken out
        "wall_s": raw["model_written_at"] - started_at - raw["scoring_s"],
        "images_per_s": ips,
        "gemm_fraction": achieved / gemm_gflops,
        "flops_per_image_forward": raw["flops_per_image_forward"],
        "final_test_accuracy": epochs[-1]["test_accuracy"],
    }
    if "first_epoch_start_at" in raw:  # Ray: process start to rank 0's first epoch, i.e. the first DDP step
        out["startup_s"] = raw["first_epoch_start_at"] - started_at
        out["compute_s"] = epochs[-1]["compute_elapsed_s"]
        out["ray"] = raw["ray"]
    return out


def fixed_schedule(runs: list[dict], target: float) -> tuple[int | None, list[float]]:
    """(first epoch count whose mean test accuracy over the runs is >= target, mean accuracy per epoch)."""
    if not runs:
        return None, []
    common = min(len(r["epochs"]) for r in runs)
    means = [statistics.fmean(r["epochs"][e]["test_accuracy"] for r in runs) for e in range(common)]
    return next((e + 1 for e, m in enumerate(means) if m >= target), None), means


def _ratio(a, b):
    return a / b if a is not None and b else None


def _time_to(run: dict | None, epoch: int | None):
    return run["epochs"][epoch - 1]["elapsed_s"] if run and epoch and len(run["epochs"]) >= epoch else None


def _same_schedule(a: dict | None, b: dict | None) -> bool:
    return bool(a and b and len(a["epochs"]) == len(b["epochs"]))


def round_ratios(runs: dict, schedules: dict) -> dict:
    """The ratios within one round (None where a contender failed or never reached the target)."""
    ex, pre, fast, default, ray = (runs.get(n) for n in ("examples", "examples_preloaded", "fast", "default", "ray_2"))
    return {
        "examples_time_to_target_over_fast_wall": _ratio(_time_to(ex, schedules.get("examples")),
                                                         fast["wall_s"] if fast else None),
        "ray_2_training_over_default": _ratio(ray["recipe_s"], default["recipe_s"]) if _same_schedule(ray, default) else None,
        "ray_2_compute_over_default": _ratio(ray["compute_s"], default["recipe_s"]) if _same_schedule(ray, default) else None,
        "examples_over_examples_preloaded": _ratio(ex["recipe_s"], pre["recipe_s"]) if _same_schedule(ex, pre) else None,
    }


RATIO_BASIS = {
    "examples_time_to_target_over_fast_wall": "examples' recipe time to its fixed schedule's end / fast's whole wall "
                                              "time (process start to model written)",
    "ray_2_training_over_default": "ray_2 from its first epoch's start to its last epoch's metrics (start-up out; "
                                   "checkpoints and MLflow logging between epochs in) / default's recipe time, same epochs",
    "ray_2_compute_over_default": "ray_2's summed epoch_time_s / default's recipe time (what Ray adds between epochs out)",
    "examples_over_examples_preloaded": "examples' recipe time / examples_preloaded's, same seed, epochs and batches",
}
FIGURES = ("wall_s", "recipe_s", "images_per_s", "gemm_fraction", "startup_s")  # timings: kept rounds only
MEMORY = ("pss_peak_mb", "pss_worker_peak_mb")  # the machine's speed does not move them: every round


SAME_RECIPE = {"examples": "examples_preloaded"}  # contender -> the one whose seeds also set its schedule


def _schedule_runs(rounds: list[dict], name: str) -> list[dict]:
    """The runs that set ``name``'s fixed schedule: its own, plus its same-recipe twin's for seeds it did not run."""
    runs = [r["runs"][name] for r in rounds if name in r["runs"]]
    twin = SAME_RECIPE.get(name)
    seeds = {run["seed"] for run in runs}
    return runs + [r["runs"][twin] for r in rounds if twin in r["runs"] and r["runs"][twin]["seed"] not in seeds]


def mark_rounds(rounds: list[dict]) -> None:
    for r in rounds:
        before, after = r["gemm_gflops"]
        r["gemm_drift"] = gemm_drift(before, after)
        r["drifted"] = r["gemm_drift"] > DRIFT_LIMIT
        r["kept"] = not r["drifted"]


def summarise(rounds: list[dict], names: list[str], target: float) -> dict:
    """Every figure and ratio; marks each round drifted/kept and stores its own ratios in it."""
    mark_rounds(rounds)
    kept = [r for r in rounds if r["kept"]]
    contenders, schedules = {}, {}
    for name in names:
        runs = [r["runs"][name] for r in rounds if name in r["runs"]]
        epoch, means = fixed_schedule(_schedule_runs(rounds, name), target)
        schedules[name] = epoch
        kept_runs = [r["runs"][name] for r in kept if name in r["runs"]]
        accuracy = [run["final_test_accuracy"] for run in runs]
        contenders[name] = {
            "runs": len(runs), "seeds": [run["seed"] for run in runs],
            "schedule_seeds": sorted(run["seed"] for run in _schedule_runs(rounds, name)), "epochs_run": len(runs[0]["epochs"]) if runs else None,
            "schedule_epochs": epoch, "reaches_target": epoch is not None,
            "mean_test_accuracy_by_epoch": means,
            "final_test_accuracy": {"mean": statistics.fmean(accuracy), "min": min(accuracy), "max": max(accuracy),
                                    "n": len(accuracy)} if accuracy else None,
            "time_to_target_s": spread(_time_to(run, epoch) for run in kept_runs),
            **{key: spread(run.get(key) for run in kept_runs) for key in FIGURES},
            **{key: spread(run.get(key) for run in runs) for key in MEMORY},
        }
    for r in rounds:
        r["ratios"] = round_ratios(r["runs"], schedules)
    ratios = {key: {**(spread(r["ratios"][key] for r in kept) or {"median": None}), "basis": basis}
              for key, basis in RATIO_BASIS.items()}
    dataset = spread(r.get("dataset_ready_s") for r in rounds)
    return {"target": target, "drift_limit": DRIFT_LIMIT,
            "rounds_kept": [r["round"] for r in kept], "rounds_left_out": [r["round"] for r in rounds if not r["kept"]],
            "contenders": contenders, "ratios": ratios, "dataset_ready_s": dataset}


def _check(value, op: str, limit: float, basis: str) -> dict:
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"value": value, "target": f"{op} {limit}", "met": met, "basis": basis}


def targets(summary: dict, default_accuracy: float) -> dict:
    """Issue 14's targets, each with its value, the bound and whether it is met (None: not measured)."""
    c, r = summary["contenders"], summary["ratios"]

    def get(name, key, field="median"):
        value = c.get(name, {}).get(key)
        return value.get(field) if isinstance(value, dict) else value

    fast_means = c.get("fast", {}).get("mean_test_accuracy_by_epoch") or [None]
    default_acc = get("default", "final_test_accuracy", "mean")
    ds = summary["dataset_ready_s"]
    return {
        "fast_one_epoch_mean_accuracy": _check(fast_means[0], ">=", summary["target"], "fast: mean over seeds after epoch 1"),
        "examples_time_to_target_over_fast_wall": _check(r["examples_time_to_target_over_fast_wall"]["median"], ">=", 15,
                                                         "median over kept rounds"),
        "default_mean_accuracy": _check(default_acc, ">=", default_accuracy, "default: mean final test accuracy"),
        "ray_2_training_over_default": _check(r["ray_2_training_over_default"]["median"], "<=", 1.15,
                                              "median over kept rounds"),
        "ray_2_startup_s": _check(get("ray_2", "startup_s"), "<=", 15, "process start to the first step, median"),
        "ray_2_worker_pss_mb": _check(get("ray_2", "pss_worker_peak_mb", "max"), "<=", 1024,
                                      "largest peak PSS of one training worker"),
        "dataset_ready_s": _check(ds["median"] if ds else None, "<=", 2.0, "median over rounds"),
    }
