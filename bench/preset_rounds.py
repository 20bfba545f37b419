"""A preset's recipe over seeds against the pytorch/examples recipe, in interleaved rounds, on the CPU.

    python -m bench.preset_rounds [--preset fast] [--rounds 5] [--threads 2] [--out FILE]

Round k runs the preset with train.seed=k, then the examples recipe (bench/examples_recipe.py, until
its test accuracy first reaches 99%), each with the project's single-process loop or the examples'
own (bench/contenders.py), so both see the same drift of the machine. The preset's figure is its fixed
schedule's wall time (training and its validation passes); accuracy is the final test accuracy on the
10,000 test images, summarised as mean and spread over the seeds, as issue 14 counts "reaches 99%".
The ratio examples / preset is computed within each round, then its median and spread reported.
Results are written after every run, so a cut-short run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench.contenders import run_examples, run_project_single


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict], preset: str) -> dict:
    mine = [r for r in runs if r["recipe"] == preset]
    examples = [r for r in runs if r["recipe"] == "examples"]
    out: dict = {}
    if mine:
        accuracy = [r["test_accuracy"] for r in mine]
        out[preset] = {"mean_test_accuracy": statistics.fmean(accuracy), "test_accuracy": spread(accuracy),
                       "wall_s": spread([r["wall_s"] for r in mine]),
                       "images_per_s": spread([r["images_per_s"] for r in mine])}
    if examples:
        out["examples"] = {"time_to_99_s": spread([r["wall_s"] for r in examples if r["reached"]] or [float("nan")]),
                           "reached_99": sum(r["reached"] for r in examples), "runs": len(examples)}
    ratios = [e["wall_s"] / p["wall_s"] for p in mine for e in examples
              if e["round"] == p["round"] and e["reached"]]
    if ratios:
        out["examples_time_to_99_over_preset_wall"] = spread(ratios)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="round k uses train.seed=first_seed+k")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the preset, as mnist-job's --set (e.g. train.batch_size=128)")
    parser.add_argument("--examples-max-epochs", type=int, default=6)
    parser.add_argument("--no-examples", action="store_true", help="the preset's seeds only")
    parser.add_argument("--out", type=Path, default=Path("bench/results/preset-rounds.json"))
    args = parser.parse_args()
    from mnist_job.core.presets import preset_overrides

    base = {"threads": args.threads, "train_subset": 0, "test_subset": 0, "target": 0.99,
            "examples_max_epochs": args.examples_max_epochs}
    runs: list[dict] = []
    for round_ in range(args.first_seed, args.first_seed + args.rounds):
        t0 = time.perf_counter()
        result = run_project_single({**base, "overrides": [*preset_overrides(args.preset), *args.overrides,
                                                                  f"train.seed={round_}"]})
        last = result["epochs"][-1]
        runs.append({"round": round_, "recipe": args.preset, "seed": round_, "wall_s": last["elapsed_s"],
                     "epochs": last["epoch"], "test_accuracy": last["test_accuracy"],
                     "images_per_s": statistics.fmean(e["images_per_s"] for e in result["epochs"]),
                     "process_s": time.perf_counter() - t0})
        if not args.no_examples:
            result = run_examples(base)
            last = result["epochs"][-1]
            runs.append({"round": round_, "recipe": "examples", "seed": 1, "wall_s": last["elapsed_s"],
                         "epochs": last["epoch"], "test_accuracy": last["test_accuracy"],
                         "reached": last["test_accuracy"] >= 0.99,
                         "images_per_s": statistics.fmean(e["images_per_s"] for e in result["epochs"])})
        report = {"preset": args.preset, "overrides": args.overrides, "threads": args.threads, "runs": runs, "summary": summarize(runs, args.preset)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["summary"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
