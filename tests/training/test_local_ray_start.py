"""A local run's Ray starts only what it needs: the Train controller, its synchronization actor and the workers.

Runs bench/startup.py's ``now`` variant (``ray_cluster.init_ray`` and ``local_trainer.local_torch_trainer``,
one DDP step on 2 workers) in a fresh process with its own Ray temp dir, then reads Ray's own logs of
that session: which Python worker processes the raylet started. No timing
threshold: speeds on shared cores vary too much (bench/startup.py reports them).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from loopback.services import PROJECT_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_start(tmp_path_factory):
    storage = tmp_path_factory.mktemp("startup")
    done = subprocess.run([sys.executable, "-m", "bench.startup", "--one", "now", "--storage", str(storage)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("STARTUP ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("STARTUP ")), storage


def test_only_the_controller_its_synchronization_actor_and_the_workers_start(local_start):
    figures, _ = local_start
    # no AutoscalingCoordinator, PlacementGroupCleaner, DatasetManager, or idle prestarted workers
    assert figures["processes"] == {"TrainController": 1, "SynchronizationActor": 1, "RayTrainWorker": 2}


def test_every_phase_is_timed_in_order(local_start):
    figures, _ = local_start
    order = ["imports_s", "ray_init_s", "fit_called_s", "controller_process_s", "group_start_s", "actors_created_s",
             "context_ready_s", "train_fn_started_s", "first_step_s"]
    values = [figures[key] for key in order]
    assert all(math.isfinite(v) and v > 0 for v in values), figures
    assert values == sorted(values), figures


def test_the_shutdown_stops_every_process_of_the_local_cluster(local_start):
    figures, _ = local_start
    exit_codes = figures["exit_codes"]  # each process of Ray's node, waited for after the driver's shutdown
    assert {"raylet", "gcs_server", "monitor"} <= set(exit_codes), exit_codes
    assert all(code is not None for codes in exit_codes.values() for code in codes), exit_codes
    assert exit_codes["monitor"] == [-9], "the autoscaler monitor is killed first, not asked and waited for"
