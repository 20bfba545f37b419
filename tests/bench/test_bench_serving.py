"""bench/serving.py still works: a tiny load (a few requests per mode) against the real stack (MLflow
server, `ray start`, `mnist-job serve`) writes serving.json and serving.md of the expected shape.
No timing thresholds: speeds on shared CPUs vary too much. Loopback only (scripts/run-tests.sh)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_serving_load_writes_the_figure(prepared_dataset, tmp_path, request):
    # The small network of loopback/models.py, from the cache the trained_network fixture fills.
    cache = request.config.cache.mkdir("trained-network")
    done = subprocess.run([sys.executable, "-m", "bench.serving", "--rounds", "2", "--requests", "4",
                           "--concurrency", "2", "--cache", str(cache), "--out", str(tmp_path)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"bench.serving failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    result = json.loads((tmp_path / "serving.json").read_text())
    assert result["config"] | {"rounds": 2, "requests": 4, "concurrency": 2} == result["config"]
    modes = ["single", "batch64", "batch64_raw"]
    assert [(r["round"], r["mode"]) for r in result["runs"]] == [(k, m) for k in (1, 2) for m in modes], \
        "interleaved rounds"
    for run in result["runs"]:
        assert run["requests"] == 4 and run["images"] == 4 * (1 if run["mode"] == "single" else 64)
        assert run["accuracy"] >= 0.9
    for mode, batch, encoding in (("single", 1, "json"), ("batch64", 64, "json"), ("batch64_raw", 64, "raw")):
        s = result["summary"][mode]
        assert s["batch"] == batch and s["encoding"] == encoding and s["rounds"] == 2
        for key in ("requests_per_s", "images_per_s", "p50_ms", "p99_ms"):
            assert isinstance(s[key], float) and math.isfinite(s[key]) and s[key] > 0, (mode, key, s[key])
        assert s["p50_ms"] <= s["p99_ms"]
        assert s["images_per_s"] == pytest.approx(s["requests_per_s"] * batch, rel=0.5)
    assert 0.9 <= result["model"]["test_accuracy"] <= 1.0
    table = (tmp_path / "serving.md").read_text()
    assert table.startswith("## Serving:") and "| one image, JSON |" in table
    assert "| batch of 64 images, JSON |" in table and "| batch of 64 images, raw uint8 pixels |" in table
