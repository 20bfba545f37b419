"""bench/preset_rounds.py's summary: accuracy over seeds, and ratios taken only within a round."""

from __future__ import annotations

import pytest

from bench.preset_rounds import summarize


def run(round_: int, recipe: str, wall: float, accuracy: float, reached: bool = True) -> dict:
    return {"round": round_, "recipe": recipe, "wall_s": wall, "test_accuracy": accuracy, "images_per_s": 1000.0,
            "reached": reached}


def test_ratios_pair_runs_of_the_same_round_and_skip_examples_short_of_99():
    runs = [run(0, "fast", 10.0, 0.990), run(0, "examples", 200.0, 0.991),
            run(1, "fast", 20.0, 0.992), run(1, "examples", 300.0, 0.991),
            run(2, "fast", 15.0, 0.988), run(2, "examples", 999.0, 0.985, reached=False)]
    summary = summarize(runs, "fast")
    assert summary["fast"]["mean_test_accuracy"] == pytest.approx(0.990)
    assert (summary["fast"]["test_accuracy"]["min"], summary["fast"]["test_accuracy"]["max"]) == (0.988, 0.992)
    ratio = summary["examples_time_to_99_over_preset_wall"]
    assert (ratio["min"], ratio["max"], ratio["n"]) == (15.0, 20.0, 2)  # 300/20 and 200/10, not 999/15
    assert summary["examples"]["reached_99"] == 2 and summary["examples"]["runs"] == 3


def test_a_preset_alone_has_no_ratio():
    summary = summarize([run(0, "fast", 10.0, 0.99)], "fast")
    assert "examples" not in summary and "examples_time_to_99_over_preset_wall" not in summary
