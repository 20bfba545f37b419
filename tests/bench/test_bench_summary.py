"""bench/summary.py's rules on made-up rounds: the drift filter, fixed schedules over seeds, ratios within rounds."""

from __future__ import annotations

import json

import pytest

from bench.report import BEGIN, END, merge
from bench.summary import fixed_schedule, run_figures, summarise, targets

NAMES = ["examples", "examples_preloaded", "fast", "default", "ray_2"]


def run(accuracies: list[float], epoch_s: float, wall_s: float, seed: int, **extra) -> dict:
    epochs = [{"epoch": i + 1, "elapsed_s": epoch_s * (i + 1), "test_accuracy": a, "train_s": epoch_s, "images": 1000}
              for i, a in enumerate(accuracies)]
    return {"seed": seed, "epochs": epochs, "recipe_s": epochs[-1]["elapsed_s"], "wall_s": wall_s,
            "images_per_s": 1000 / epoch_s, "gemm_fraction": 0.1, "final_test_accuracy": accuracies[-1],
            "pss_peak_mb": 900.0, "pss_worker_peak_mb": None, **extra}


def a_round(k: int, gemm: tuple[float, float], examples_epoch_s: float, fast_wall: float, ray_epoch_s: float) -> dict:
    return {"round": k, "seed": k, "gemm_gflops": list(gemm), "loadavg_before": 1.0, "failed": {}, "runs": {
        "examples": run([0.985, 0.989, 0.991], examples_epoch_s, 1000, k),
        "examples_preloaded": run([0.985, 0.989, 0.991], examples_epoch_s / 2, 500, k),
        "fast": run([0.991], 20, fast_wall, k),
        "default": run([0.990, 0.995], 50, 120, k),
        "ray_2": run([0.990, 0.995], ray_epoch_s, 150, k, startup_s=30.0, compute_s=2 * ray_epoch_s,
                     pss_worker_peak_mb=700.0),
    }, "dataset_ready_s": 1.5}


def test_a_round_whose_gemm_samples_drift_is_left_out_of_timings_and_ratios():
    rounds = [a_round(1, (100, 105), 300, 30, 55),   # 5% drift: kept
              a_round(2, (100, 80), 900, 10, 200),   # 25% drift: left out, and its numbers are wild
              a_round(3, (100, 98), 320, 32, 62)]
    s = summarise(rounds, NAMES, 0.99)
    assert s["rounds_kept"] == [1, 3] and s["rounds_left_out"] == [2]
    assert [r["drifted"] for r in rounds] == [False, True, False]
    assert rounds[1]["gemm_drift"] == pytest.approx(0.25)  # relative to the smaller sample
    # examples reaches 99% at epoch 3 on the mean: 900 s / 30 s and 960 s / 32 s; round 2's 2700/10 stays out
    ratio = s["ratios"]["examples_time_to_target_over_fast_wall"]
    assert (ratio["min"], ratio["max"], ratio["n"]) == (pytest.approx(30.0), pytest.approx(30.0), 2)
    assert rounds[1]["ratios"]["examples_time_to_target_over_fast_wall"] == pytest.approx(270.0)  # computed, not used
    ray = s["ratios"]["ray_2_training_over_default"]
    assert (ray["min"], ray["max"]) == (pytest.approx(1.1), pytest.approx(1.24))
    assert s["ratios"]["examples_over_examples_preloaded"]["median"] == pytest.approx(2.0)
    ex = s["contenders"]["examples"]
    assert ex["schedule_epochs"] == 3 and ex["time_to_target_s"]["median"] == pytest.approx(930.0)
    assert ex["final_test_accuracy"]["n"] == 3  # accuracy counts every seed, drifted or not
    t = targets(s, 0.994)
    assert t["examples_time_to_target_over_fast_wall"]["met"] is True
    assert t["ray_2_training_over_default"]["met"] is False  # median of 1.1 and 1.24: 1.17
    assert t["ray_2_worker_pss_mb"]["met"] is True and t["dataset_ready_s"]["met"] is True
    assert t["fast_one_epoch_mean_accuracy"]["met"] is True and t["default_mean_accuracy"]["met"] is True


def test_every_round_drifted_leaves_no_ratio_and_no_met_target():
    s = summarise([a_round(1, (100, 150), 300, 30, 55)], NAMES, 0.99)
    assert s["rounds_kept"] == [] and s["ratios"]["ray_2_training_over_default"]["median"] is None
    assert s["contenders"]["fast"]["wall_s"] is None
    assert s["contenders"]["fast"]["pss_peak_mb"]["n"] == 1  # memory does not depend on the machine's speed
    assert targets(s, 0.994)["ray_2_training_over_default"]["met"] is None


def test_the_schedule_is_set_by_the_mean_over_seeds_not_a_lucky_seed():
    runs = [{"epochs": [{"test_accuracy": a} for a in accs]} for accs in ([0.992, 0.993], [0.985, 0.990], [0.986, 0.991])]
    epoch, means = fixed_schedule(runs, 0.99)
    assert epoch == 2 and means[0] == pytest.approx(0.9876666, abs=1e-6)
    assert fixed_schedule(runs, 0.999)[0] is None


def test_wall_time_takes_the_benchmarks_test_scoring_out():
    raw = {"seed": 1, "epochs": [{"train_s": 10.0, "images": 5000, "elapsed_s": 12.0, "test_accuracy": 0.9}],
           "flops_per_image_forward": 1e6, "model_written_at": 1000.0 + 30.0, "scoring_s": 4.0}
    f = run_figures(raw, 1000.0, 15.0)
    assert f["wall_s"] == pytest.approx(26.0) and f["images_per_s"] == pytest.approx(500.0)
    assert f["gemm_fraction"] == pytest.approx(3 * 1e6 * 500 / 1e9 / 15.0)


def test_results_md_keeps_the_hand_written_sections():
    old = f"{BEGIN}\nold table\n{END}\n\n## On a GPU\nhand-written\n"
    new = merge(old, "new table")
    assert "new table" in new and "old table" not in new and new.endswith("## On a GPU\nhand-written\n")
    assert merge("## notes only\n", "t").startswith(BEGIN) and merge("## notes only\n", "t").endswith("## notes only\n")


def test_the_report_names_the_rounds_left_out_and_draws_the_plot(tmp_path):
    from bench.report import write_all
    from bench.summary import targets as issue_targets

    rounds = [a_round(1, (100, 105), 300, 30, 55), a_round(2, (100, 80), 900, 10, 200)]
    s = summarise(rounds, NAMES, 0.99)
    result = {"mode": "full", "complete": True, "started": "now", "wall_s": 60.0, "rounds": rounds, "summary": s,
              "targets": issue_targets(s, 0.994), "failures": {}, "contender_names": NAMES,
              "descriptions": {n: n for n in NAMES}, "config": {"test_subset": 0},
              "machine": {"cpus": 2, "cpu_model": "cpu", "threads": 2, "memory_gib": 24, "torch": "t", "python": "p"}}
    (tmp_path / "RESULTS.md").write_text("## On a GPU\nhand-written\n")
    write_all(result, tmp_path)
    md = (tmp_path / "RESULTS.md").read_text()
    assert "**Rounds kept: 1 of 2**" in md and "(rounds 2)" in md and md.endswith("## On a GPU\nhand-written\n")
    assert "| 2 | 2 | 100 / 80 | 25.0% | no |" in md
    assert (tmp_path / "RESULTS.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "RESULTS.json").read_text())["summary"]["rounds_left_out"] == [2]


def test_examples_in_fewer_rounds_takes_its_schedule_from_the_same_recipe_on_preloaded_tensors():
    rounds = [a_round(k, (100, 101), 300, 30, 55) for k in (1, 2, 3, 4)]
    for r in rounds[2:]:  # the DataLoader reference ran in rounds 1-2 only
        del r["runs"]["examples"]
    for r in rounds[:2]:  # its own two seeds reach 99% at epoch 2, the twin's other seeds only at epoch 3
        r["runs"]["examples"] = run([0.985, 0.9905, 0.991], 300, 1000, r["seed"])
        r["runs"]["examples_preloaded"] = run([0.985, 0.9905, 0.991], 150, 500, r["seed"])
    for r in rounds[2:]:
        r["runs"]["examples_preloaded"] = run([0.985, 0.988, 0.991], 150, 500, r["seed"])
    s = summarise(rounds, NAMES, 0.99)
    ex = s["contenders"]["examples"]
    assert ex["runs"] == 2 and ex["schedule_seeds"] == [1, 2, 3, 4]
    assert ex["schedule_epochs"] == 3  # mean at epoch 2 over 4 seeds: 0.98925, not its own 0.9905
    assert ex["time_to_target_s"]["median"] == pytest.approx(900.0) and ex["final_test_accuracy"]["n"] == 2
    assert s["contenders"]["examples_preloaded"]["schedule_epochs"] == 3
    assert [r["ratios"]["examples_time_to_target_over_fast_wall"] for r in rounds] == [
        pytest.approx(30.0), pytest.approx(30.0), None, None]
