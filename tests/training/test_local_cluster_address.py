"""A local cluster's own processes find it while another Ray runs on the machine.

Ray's State API, which Ray Train's placement-group cleaner polls from inside the cluster, finds its
cluster by RAY_ADDRESS, else by scanning the machine, and fails when it sees two clusters. A failed
cleaner let a tuning trial stopped by ASHA keep its CPUs, and the next trial waited for them until
Ray Train's start timeout (CI, with a test's `ray start` cluster still up). Reproduced here: a second
cluster runs while mnist_job.training.ray_cluster.init_ray starts the local one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loopback.services import PROJECT_DIR, base_env, start_ray_cluster

pytestmark = pytest.mark.slow

PROBE = """
import json, os
from pathlib import Path
import ray
from mnist_job.core.config import Runtime
from mnist_job.training.ray_cluster import init_ray

init_ray(Runtime(project_dir=Path.cwd()))

@ray.remote(num_cpus=0)
def state_api_from_inside():
    from ray.util.state import list_actors  # no address: found as the cleaner finds it
    list_actors(limit=1)
    return os.environ.get("RAY_ADDRESS")

print("PROBE " + json.dumps({"inside": ray.get(state_api_from_inside.remote()),
                             "driver": os.environ.get("RAY_ADDRESS"), "gcs": ray.get_runtime_context().gcs_address}))
"""


def test_the_state_api_inside_a_local_cluster_finds_it_beside_another_cluster(tmp_path):
    other = start_ray_cluster(tmp_path / "other", head_cpus=1, worker_cpus=[])
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_DIR, env=base_env(), capture_output=True,
                              text=True, timeout=300)
    finally:
        other.stop()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-3000:]
    seen = json.loads(lines[-1].removeprefix("PROBE "))
    port = seen["gcs"].rsplit(":", 1)[1]
    assert seen["inside"] == f"127.0.0.1:{port}", seen  # its own cluster, not the other one
    assert port != other.address.rsplit(":", 1)[1]
    assert seen["driver"] is None, "the driver's own environment is left as it was"
