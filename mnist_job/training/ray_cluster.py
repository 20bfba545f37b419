"""The Ray cluster a run uses: the one RAY_ADDRESS names (a RayJob's), or a local one this process starts.

A local cluster is started lean (bench/startup.py measures each setting) and its own processes are told
its address. Only the process that started it may run Ray Train without the helper actors a shared
cluster needs (mnist_job/training/local_trainer.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager

from mnist_job.core.config import Runtime
from mnist_job.core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


def init_ray(runtime: Runtime, dashboard: bool = True):
    """Ray, initialised: connected to RAY_ADDRESS, or a local cluster started here (``dashboard``: with the
    dashboard and its State API, which a cluster shared by several Ray Train runs needs: see below)."""
    import ray

    if ray.is_initialized():  # e.g. inside a tuning trial: a Ray worker of the study's cluster
        return ray
    if runtime.ray_address:  # a cluster: the RayJob's driver, or RAY_ADDRESS set by hand
        try:
            ray.init(address=runtime.ray_address, log_to_driver=True)
        except ConnectionError as exc:
            raise ServiceUnavailable(f"Ray cluster at {runtime.ray_address} is unreachable: {exc}") from None
    else:
        # "local": always a fresh cluster; a stale /tmp/ray/ray_current_cluster cannot hijack it.
        t0 = time.monotonic()
        for name, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(name, value)
        # The dashboard serves the State API that Ray Train's placement-group cleaner polls (a tuning
        # study's trials; a lone run has no cleaner: training/local_trainer.py, and no dashboard). Called
        # without an address, that API takes RAY_ADDRESS, else scans the machine for Ray clusters and
        # fails when it finds two (another user's, a test's): the cleaner died, a tuning trial stopped by
        # ASHA kept its CPUs, and the next trial waited for them for ever. So the cluster's own processes
        # (started by ray.init, with this environment) get its address; this process's is restored.
        port = runtime.ray_gcs_port or str(_free_local_port())
        with _environment(RAY_GCS_SERVER_PORT=port, RAY_ADDRESS=f"127.0.0.1:{port}"):
            ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", log_to_driver=True,
                     _system_config=LOCAL_RAY_SYSTEM_CONFIG)
        logger.debug(f"ray: local cluster started in {time.monotonic() - t0:.1f} s")
        _owned_local_cluster.append(ray.get_runtime_context().get_job_id())
    return ray


def shutdown_local_cluster(ray) -> None:
    """``ray.shutdown()`` of the local cluster this process started, a second sooner.

    Ray stops its processes one after another, each with SIGTERM and up to 1 s to exit. Its autoscaler
    monitor, which a local cluster has no use for, answers SIGTERM by reporting its end to the GCS that
    Ray has stopped just before, and takes its whole second; killed first, it takes none. The monitor is
    found in Ray 2.60's node object; where that moved, the plain shutdown does it all, only slower.
    """
    node = getattr(ray._private.worker, "_global_node", None)
    for monitor in getattr(node, "all_processes", {}).get("monitor", []):
        monitor.process.kill()
        monitor.process.wait(timeout=5)
    ray.shutdown()


def keep_every_log_line() -> None:
    """Ray folds log lines that differ only in numbers ("[rank 0] epoch 2" / "[rank 1] epoch 2"), which hides
    per-rank progress and resume messages in the log file; keep every line. Ray reads this when it is
    imported: call it before any import of ray (a training run's driver, a study's)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _environment(**values: str):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# The job of the local cluster this process started. Only there may Ray Train run without its helper
# actors (training/local_trainer.py): in a tuning trial, a Ray worker of the study, a trial that Tune stops
# could leave its placement group holding CPUs for the rest of the study without the cleaner.
_owned_local_cluster: list[str] = []


def owns_local_cluster() -> bool:
    import ray

    return bool(_owned_local_cluster) and ray.is_initialized() and \
        ray.get_runtime_context().get_job_id() == _owned_local_cluster[-1]


# A local run lives and dies with this process on one machine: nothing scrapes its metrics and no
# node is drained, and on a few cores every extra Ray process delays the first training step
# (bench/startup.py measures it). Each setting is applied only where the user has not set it.
LOCAL_RAY_ENV = {
    "RAY_TRAIN_METRICS_ENABLED": "0",  # no metrics actors and callbacks in the controller and workers
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",  # no watcher actor polling for node drains
    # Nothing autoscales here and plan_resources checked the CPUs before the start, so a slow start is
    # only a busy machine (two tuning trials each starting torch workers on 2 cores took over Ray's 60 s).
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
}
LOCAL_RAY_SYSTEM_CONFIG = {
    "enable_metrics_collection": False,  # no metrics recording and export in every Ray process
    # Ray prestarts one idle worker process per CPU for tasks; Ray Train's actors carry their own
    # environment and cannot use them, so on 2 cores they only compete with the actors' start.
    "prestart_worker_first_driver": False,
}
