"""bench/gpu_recipes.py, the script run on a lent GPU machine, still runs: its quick mode on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import services

pytestmark = pytest.mark.slow


def test_gpu_recipes_quick_mode_runs_on_the_cpu(prepared_dataset, tmp_path):
    out = tmp_path / "recipes.json"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_recipes", "--quick", "--data", str(prepared_dataset),
                           "--out", str(out)], cwd=services.PROJECT_DIR, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    assert set(result["recipes"]) == {"default", "fast-w32-adam"}
    for summary in result["recipes"].values():
        assert summary["seeds"] == 1 and summary["median_wall_s"] > 0 and summary["median_images_per_s"] > 0
        assert 0.1 < summary["mean_test_accuracy"] <= 1.0  # it learned something from 2,000 images in one epoch
