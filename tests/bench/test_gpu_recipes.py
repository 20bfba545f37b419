"""bench/gpu_recipes.py, the script run on a lent GPU machine: it still runs (quick mode, on the CPU) and its
final recipes are the ones that ship."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import gpu_recipes
from mnist_job.core.config import load_params
from mnist_job.core.presets import preset_overrides
from tests.support import services


@pytest.mark.slow
def test_gpu_recipes_quick_mode_runs_on_the_cpu(prepared_dataset, tmp_path):
    out = tmp_path / "recipes.json"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_recipes", "--quick", "--data", str(prepared_dataset),
                           "--out", str(out)], cwd=services.PROJECT_DIR, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    assert set(result["recipes"]) == {"default", "fast"}
    for summary in result["recipes"].values():
        assert summary["seeds"] == 1 and summary["median_wall_s"] > 0 and summary["median_images_per_s"] > 0
        assert 0.1 < summary["mean_test_accuracy"] <= 1.0  # it learned something from 2,000 images in one epoch


@pytest.mark.parametrize(("recipe", "preset"), [(gpu_recipes.DEFAULT, "default"), (gpu_recipes.FAST, "fast")])
def test_the_final_recipes_are_what_ships(recipe, preset):
    """The GPU figures are for params.yaml and --preset fast as they are, not for a copy that drifted."""
    name, epochs, width, dropout, batch, kind, lr, weight_decay, validation = recipe
    params = load_params(services.PROJECT_DIR / "params.yaml", preset_overrides(preset))
    betas = (0.7, 0.9) if kind == "adam-fast" else (0.9, 0.999)  # bench/gpu_recipes.py's optimizer_for
    assert (epochs, width, dropout, batch, lr, weight_decay, validation) == (
        params.train.epochs, params.model.width, params.model.dropout, params.train.batch_size,
        params.train.learning_rate, params.train.weight_decay, params.data.validation_size)
    assert betas == tuple(params.train.adam_betas)
