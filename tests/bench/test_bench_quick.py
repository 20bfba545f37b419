"""The benchmark harness still works: `python -m bench.run --quick` writes a complete, sane latest.json.

Runs the real contenders (pytorch/examples recipe, the project in one process, the
Ray Train job with 1 and 2 workers) and the DVC-from-S3 "dataset ready" measurement
on a subset for one epoch. No timing thresholds: speeds on shared CPUs vary too much.
Needs loopback only (scripts/run-tests.sh runs it in a network namespace).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONTENDERS = ("examples", "project_single", "ray_1", "ray_2")
PER_CONTENDER = ("time_to_99_s", "train_images_per_s", "peak_rss_mb", "gemm_fraction")
RATIOS = ("speedup_vs_examples_time_to_99", "ray_overhead_vs_single_process", "gemm_fraction")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path]:
    if not (PROJECT_DIR / "data" / "mnist" / "manifest.json").is_file():
        pytest.fail("data/mnist is not prepared: run `make data` first")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"bench quick failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads((out / "latest.json").read_text()), out


@pytest.mark.slow
def test_quick_run_writes_every_output(quick):
    result, out = quick
    assert result["mode"] == "quick"
    assert result["failures"] == {}
    assert (out / "latest.md").read_text().count("\n| ") >= len(CONTENDERS)
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["gemm"]["gflops_samples"]) == len(CONTENDERS) + 1
    assert all(positive(g) for g in result["gemm"]["gflops_samples"])


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTENDERS)
def test_every_contender_has_sane_fields(quick, name):
    result, _ = quick
    c = result["contenders"][name]
    for key in PER_CONTENDER:
        assert key in c, f"{name} lacks {key}"
    assert c["time_to_99_s"] is None  # quick mode aims at 80%, not 99%
    assert positive(c["time_to_target_s"]), "the quick target (80% after one epoch) was not reached"
    assert c["epochs_to_target"] == 1
    assert positive(c["train_images_per_s"])
    assert c["peak_rss_mb"] > 100  # a Python process with torch loaded, at least
    assert positive(c["gemm_fraction"])
    assert positive(c["flops_per_image_forward"])
    assert 0.8 <= c["final_test_accuracy"] <= 1.0
    assert len(c["epochs"]) == 1 and c["epochs"][0]["images"] > 0


@pytest.mark.slow
def test_ray_contenders_count_startup_apart(quick):
    result, _ = quick
    ray1, ray2 = result["contenders"]["ray_1"], result["contenders"]["ray_2"]
    for c in (ray1, ray2):
        assert positive(c["startup_s"]) and positive(c["startup"]["ray_init_s"])
        assert c["startup"]["ray_init_s"] < c["startup_s"]  # ray.init is part of the start-up
        assert c["startup_s"] < c["startup"]["total_wall_s"]
        assert c["test_accuracy_job"] is not None  # the job's own final evaluation ran
    assert ray2["workers"] == 2 and ray1["workers"] == 1
    # every Ray process was sampled: the driver, GCS, raylet and the workers
    assert ray2["peak_rss_processes"] > result["contenders"]["project_single"]["peak_rss_processes"] + 2


@pytest.mark.slow
def test_ratios_and_dataset_ready(quick):
    result, _ = quick
    for key in RATIOS:
        assert positive(result["ratios"][key]), key
    assert result["ratios"]["gemm_fraction_basis"] in ("project_single", "ray_1", "ray_2")
    d = result["dataset_ready"]
    assert positive(d["seconds"]) and d["bytes"] > 50_000_000
    assert all(positive(r["dvc_pull_s"]) for r in d["runs"])
    assert set(result["targets"]) == {*RATIOS, "dataset_ready_s"}
