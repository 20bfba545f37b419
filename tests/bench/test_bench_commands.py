"""bench/commands.py still works: one round of the two user commands (a subset, one epoch) writes
commands.json and commands.md with each run's wall time, accuracy and logged phases. No timing
thresholds: speeds on shared CPUs vary too much. Loopback only (scripts/run-tests.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SMALL = ["train.epochs=1", "data.train_subset=4000", "data.validation_size=500", "data.test_subset=1000",
         "mlflow.register_min_accuracy=0.5"]


@pytest.mark.slow
def test_one_round_of_the_user_commands_writes_their_times_and_phases(prepared_dataset, tmp_path):
    examples = tmp_path / "RESULTS.json"  # a full run's figure, as bench/RESULTS.json holds it
    examples.write_text(json.dumps({"summary": {"contenders": {"examples": {"time_to_target_s": {"median": 300.0}}}}}))
    done = subprocess.run([sys.executable, "-m", "bench.commands", "--rounds", "1", "--out", str(tmp_path / "out"),
                           "--examples-json", str(examples), *[a for s in SMALL for a in ("--set", s)]],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"bench.commands failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    result = json.loads((tmp_path / "out" / "commands.json").read_text())
    assert [(r["command"], r["seed"]) for r in result["runs"]] == [("cli_fast", 1), ("cli_default", 1)]
    for run in result["runs"]:
        phases = run["phases"]
        assert {"ray_start", "fit", "workers_ready", "epoch", "evaluate", "register"} <= set(phases), phases
        assert 0 < run["epochs_s"] == phases["epoch"] < phases["fit"] < run["wall_s"]
        assert run["not_training_s"] == pytest.approx(run["wall_s"] - run["epochs_s"])
        assert run["test_accuracy"] >= 0.5 and run["registered"].startswith("mnist-cnn/")
    for name, argv in (("cli_fast", ["mnist-job", "train", "--preset", "fast"]), ("cli_default", ["mnist-job", "train"])):
        s = result["summary"][name]
        assert s["argv"] == argv and s["rounds"] == 1
        assert s["examples_time_to_99_over_wall"] == pytest.approx(300.0 / s["wall_s"]["median"])
    table = (tmp_path / "out" / "commands.md").read_text()
    assert table.startswith("## What a user waits for") and "| `mnist-job train --preset fast` |" in table
