"""The benchmark harness still works: `python -m bench.run --quick` writes a complete, sane RESULTS.json.

Runs the real contenders (the pytorch/examples recipe with and without its per-sample data path,
the project's fast and default recipes in one process, the Ray Train job with 2 workers) and the
DVC-from-S3 "dataset ready" measurement in 2 interleaved rounds on a subset for one epoch. No timing
thresholds: speeds on shared CPUs vary too much; the drift filter's rules are checked on made-up rounds
in test_bench_summary.py, and here on the real rounds against their own GEMM samples.
Needs loopback only (scripts/run-tests.sh runs it in a network namespace).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.summary import DRIFT_LIMIT, RATIO_BASIS

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONTENDERS = ("examples", "examples_preloaded", "fast", "default", "ray_2")
FIGURES = ("time_to_target_s", "wall_s", "recipe_s", "images_per_s", "gemm_fraction")  # over kept rounds
pytestmark = pytest.mark.slow


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def sane_spread(fig: dict | None, n: int) -> bool:
    return bool(fig) and fig["n"] == n and positive(fig["min"]) and fig["min"] <= fig["median"] <= fig["max"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path]:
    if not (PROJECT_DIR / "data" / "mnist" / "manifest.json").is_file():
        pytest.fail("data/mnist is not prepared: run `make data` first")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"bench quick failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads((out / "RESULTS.json").read_text()), out


def test_quick_run_writes_every_output(quick):
    result, out = quick
    assert result["mode"] == "quick" and result["complete"] and result["failures"] == {}
    assert result["contender_names"] == list(CONTENDERS)
    md = (out / "RESULTS.md").read_text()
    assert all(f"`{name}`" in md for name in CONTENDERS) and "Rounds kept:" in md
    assert (out / "RESULTS.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["machine"]["cpus"] >= 1 and result["machine"]["cpu_model"]


def test_rounds_are_seeds_and_drift_is_marked_from_their_own_gemm_samples(quick):
    result, _ = quick
    rounds, s = result["rounds"], result["summary"]
    assert [(r["round"], r["seed"]) for r in rounds] == [(1, 1), (2, 2)]
    for r in rounds:
        before, after = r["gemm_gflops"]
        assert positive(before) and positive(after)
        assert r["drifted"] == (abs(after - before) / min(before, after) > DRIFT_LIMIT)
        assert r["kept"] == (not r["drifted"])
        assert set(r["runs"]) == set(CONTENDERS) and all(run["seed"] == r["seed"] for run in r["runs"].values())
    assert s["rounds_kept"] == [r["round"] for r in rounds if r["kept"]]
    assert s["rounds_left_out"] == [r["round"] for r in rounds if not r["kept"]]


@pytest.mark.parametrize("name", CONTENDERS)
def test_every_contender_has_sane_fields(quick, name):
    result, _ = quick
    c, kept = result["summary"]["contenders"][name], len(result["summary"]["rounds_kept"])
    assert c["runs"] == 2 and c["seeds"] == [1, 2] and c["epochs_run"] == 1
    assert c["schedule_epochs"] == 1, f"the quick target (80% after one epoch) was not reached: {c}"
    assert 0.8 <= c["final_test_accuracy"]["min"] <= c["final_test_accuracy"]["mean"] <= 1.0
    for key in FIGURES:
        assert (sane_spread(c[key], kept) if kept else c[key] is None), (key, c[key])
    assert sane_spread(c["pss_peak_mb"], 2)  # memory: every round, drifted or not
    for r in result["rounds"]:
        run = r["runs"][name]
        assert run["recipe_s"] < run["wall_s"], "the wall time includes start-up and the recipe"
        assert run["pss_peak_mb"] > 100 and run["pss_samples"] > 0  # a Python process with torch, at least


def test_ray_reports_startup_and_a_workers_pss_apart(quick):
    result, _ = quick
    for r in result["rounds"]:
        ray, single = r["runs"]["ray_2"], r["runs"]["default"]
        assert 0 < ray["startup_s"] < ray["wall_s"] and ray["ray"]["ray_init_s"] < ray["startup_s"]
        # the training worker is one process of the tree: less than the whole tree, more than nothing
        assert 100 < ray["pss_worker_peak_mb"] < ray["pss_peak_mb"]
        assert ray["pss_processes_at_peak"] > single["pss_processes_at_peak"] + 2  # GCS, raylet, workers sampled
        assert single["pss_worker_peak_mb"] is None


def test_examples_preloaded_differs_from_examples_in_the_data_path_only(quick):
    result, _ = quick
    for r in result["rounds"]:
        ex, pre = r["runs"]["examples"], r["runs"]["examples_preloaded"]
        # same seed, shuffling, batches and dropout draws: the same model up to float rounding
        assert abs(ex["final_test_accuracy"] - pre["final_test_accuracy"]) <= 0.005
        assert ex["epochs"][0]["images"] == pre["epochs"][0]["images"] == 10000


def test_ratios_targets_and_dataset_ready(quick):
    result, _ = quick
    s, kept = result["summary"], [r for r in result["rounds"] if r["kept"]]
    for r in result["rounds"]:
        assert set(r["ratios"]) == set(RATIO_BASIS) and all(positive(v) for v in r["ratios"].values())
        ex, fast = r["runs"]["examples"], r["runs"]["fast"]
        assert r["ratios"]["examples_time_to_target_over_fast_wall"] == pytest.approx(
            ex["epochs"][0]["elapsed_s"] / fast["wall_s"])
    for key in RATIO_BASIS:
        values = sorted(r["ratios"][key] for r in kept)
        assert s["ratios"][key].get("n", 0) == len(values)
        if values:
            assert (s["ratios"][key]["min"], s["ratios"][key]["max"]) == (values[0], values[-1])
    assert set(result["targets"]) == {"fast_one_epoch_mean_accuracy", "examples_time_to_target_over_fast_wall",
                                      "default_mean_accuracy", "ray_2_training_over_default", "ray_2_startup_s",
                                      "ray_2_worker_pss_mb", "dataset_ready_s"}
    assert result["targets"]["fast_one_epoch_mean_accuracy"]["met"] is True  # 80% after one epoch
    assert sane_spread(s["dataset_ready_s"], 2)
    assert all(positive(r["dataset_ready"]["dvc_pull_s"]) for r in result["rounds"])
