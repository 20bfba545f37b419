"""What a run needs before a worker starts, checked and decided once, on the driver.

A setting that cannot work is refused here with exit 2, naming the field, in seconds rather than after
the cluster has started its workers (mnist_job/training/driver.py calls these before Ray starts).
What the driver decided reaches the workers as one frozen ``WorkerPlan``: they take it as it is
(mnist_job/training/loop.py) and compute none of it again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from mnist_job.core.config import Params, Runtime
from mnist_job.core.errors import InvalidInput
from mnist_job.core.paths import Output
from mnist_job.data.dvc_store import CACHED_DATA_OUTPUTS

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a training run writes (checked before it starts: mnist_job/core/paths.py): its outputs, its local
# checkpoints (an s3:// storage path is not a folder here), and the dataset pulled into MNIST_DATA_CACHE.
TRAIN_OUTPUTS = (
    *CACHED_DATA_OUTPUTS,
    Output("train.output_dir", lambda args, params, runtime: params.train.output_dir),
    Output("train.storage_path",
           lambda args, params, runtime: None if "://" in params.train.storage_path else params.train.storage_path),
)


def default_run_name() -> str:
    """A run's name when train.run_name is empty: when it started, and 4 hex digits against a clash."""
    return f"mnist-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def resolve_storage_path(storage_path: str, runtime: Runtime) -> str:
    """``train.storage_path`` as Ray Train takes it: s3:// as it is, a local path absolute."""
    if storage_path.startswith("s3://"):
        return storage_path
    if "://" in storage_path:
        raise InvalidInput(f"train.storage_path: {storage_path!r}: only local paths and s3:// are supported")
    return str(runtime.path(storage_path).resolve())


# How long a driver on a running Ray cluster waits for the CPUs or GPUs it needs to join: a retried RayJob
# submits to a new head before its workers have reconnected, and an autoscaler adds nodes as asked.
CLUSTER_JOIN_S = 180.0


def plan_resources(params: Params, ray, runtime: Runtime, join_timeout_s: float | None = None,
                   poll_s: float = 2.0) -> tuple[bool, int]:
    """(use_gpu, CPUs per worker), refusing combinations the cluster cannot run (``when_nodes_join``)."""
    def plan(resources: dict) -> tuple[bool, int]:
        return _plan_for(params, int(resources.get("CPU", 0)), int(resources.get("GPU", 0)))

    return when_nodes_join(ray, runtime, plan, join_timeout_s, poll_s)


def when_nodes_join(ray, runtime: Runtime, plan: Callable[[dict], T], join_timeout_s: float | None = None,
                    poll_s: float = 2.0) -> T:
    """``plan(ray.cluster_resources())``, whose InvalidInput is final at once on the local cluster the driver
    started, and on another only after ``join_timeout_s`` (CLUSTER_JOIN_S) without the nodes it needs joining."""
    if join_timeout_s is None:
        join_timeout_s = CLUSTER_JOIN_S if runtime.ray_address else 0.0
    deadline, said = time.monotonic() + join_timeout_s, False
    while True:
        try:
            return plan(ray.cluster_resources())
        except InvalidInput as refused:
            if time.monotonic() >= deadline:
                raise
            if not said:
                logger.info(f"ray: waiting up to {join_timeout_s:.0f} s for nodes to join: {refused}")
                said = True
            time.sleep(poll_s)


def _plan_for(params: Params, cpus: int, gpus: int) -> tuple[bool, int]:
    workers = params.train.num_workers
    use_gpu = params.train.use_gpu == "true" or (params.train.use_gpu == "auto" and gpus > 0)
    problems = []
    if params.train.use_gpu == "true" and gpus == 0:
        problems.append("train.use_gpu: true, but the Ray cluster has no GPU")
    elif use_gpu and workers > gpus:
        problems.append(f"train.num_workers: {workers} workers need {workers} GPUs; the Ray cluster has {gpus}")
    if params.train.cpus_per_worker:
        per_worker = params.train.cpus_per_worker
    elif use_gpu:
        per_worker = 1
    else:  # share the cluster's CPUs: threads per worker = its CPU share
        per_worker = max(1, cpus // workers)
    if not use_gpu and workers * per_worker > cpus:
        problems.append(
            f"train.num_workers: {workers} workers x {per_worker} CPUs exceed the {cpus} CPUs of the Ray cluster "
            "(lower train.num_workers or train.cpus_per_worker)")
    if problems:
        raise InvalidInput(problems)
    return use_gpu, per_worker


@dataclass(frozen=True)
class BatchPlan:
    """The global batch split over the workers: computed and checked here only (``plan_batches``)."""

    per_worker: int  # images each worker takes per step
    steps_per_epoch: int  # equal on every rank: no rank waits on a missing all-reduce
    train_images: int  # the training images left after the subset and the validation hold-out


def plan_batches(params: Params, train_images: int) -> BatchPlan:
    """Refuse, before Ray starts, a run in which a rank would get no training step or no validation image.

    Inside the workers the first would fail only after the cluster started, and the second would leave
    a rank with nothing to score while the others wait for its share of the all-reduce.
    ``train_images``: the size of the dataset's training split (its manifest says it).
    ``TrainParams`` already refused a batch smaller than the worker count, so every worker takes at least one image.
    """
    workers = params.train.num_workers
    available = (params.data.train_subset or train_images) - params.data.validation_size
    per_rank, per_worker = available // workers, params.train.batch_size // workers
    problems = []
    if per_rank < per_worker:
        problems.append(f"train.batch_size: {params.train.batch_size} images per step need at least "
                        f"{per_worker} training images on each of {workers} workers; the training set has "
                        f"{available} ({per_rank} per worker)")
    if params.data.validation_size < workers:
        problems.append(f"data.validation_size: {params.data.validation_size} validation images leave some of "
                        f"the {workers} workers (train.num_workers) none; hold out at least {workers}")
    if problems:
        raise InvalidInput(problems)
    return BatchPlan(per_worker=per_worker, steps_per_epoch=per_rank // per_worker, train_images=available)


@dataclass(frozen=True)
class WorkerPlan:
    """Everything a Ray Train worker is told, built once by the driver just before ``fit``.

    Ray pickles it to every worker, which takes it as it is: nothing is looked up by name, and a field
    that does not exist fails where it is read, not with a ``KeyError`` inside a worker.
    """

    params: Params  # validated once, on the driver
    runtime: Runtime  # the driver's; each worker takes ``runtime.for_this_node()``
    tracking_uri: str
    run_id: str  # the MLflow run rank 0 logs to (started or resumed by the driver)
    threads_per_worker: int  # torch threads on a CPU worker: its share of the cluster's CPUs
    # rank 0's torch threads after the last epoch, when the other ranks are done: a local cluster this run
    # started is all its own (every CPU), a shared node is not (its share, as before)
    threads_after_training: int
    batch: BatchPlan
    verbose: bool  # the job's debug lines too
    progress: bool  # rank 0 reports its place within each epoch (the driver draws a bar on a terminal)
    handed_over_at: float  # time.time() on the driver as it handed the plan to Ray Train: the worker group's start
