"""What a run needs before a worker starts, checked on the driver: GPUs and CPUs, and data for every rank.

A setting that cannot work is refused here with exit 2, naming the field, in seconds rather than after
the cluster has started its workers (mnist_job/training/driver.py calls these before ``fit``).
"""

from __future__ import annotations

from mnist_job.core.config import Params
from mnist_job.core.errors import InvalidInput


def plan_resources(params: Params, ray) -> tuple[bool, int]:
    """(use_gpu, CPUs per worker), refusing combinations the cluster cannot run."""
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
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


def check_every_rank_gets_data(params: Params, train_images: int) -> None:
    """Refuse, before Ray starts, a run in which a rank would get no training step or no validation image.

    Inside the workers the first would fail only after the cluster started, and the second would leave
    a rank with nothing to score while the others wait for its share of the all-reduce.
    """
    workers = params.train.num_workers
    available = (params.data.train_subset or train_images) - params.data.validation_size
    per_rank, local_batch = available // workers, max(1, params.train.batch_size // workers)
    problems = []
    if per_rank < local_batch:
        problems.append(f"train.batch_size: {params.train.batch_size} images per step need at least "
                        f"{local_batch} training images on each of {workers} workers; the training set has "
                        f"{available} ({per_rank} per worker)")
    if params.data.validation_size < workers:
        problems.append(f"data.validation_size: {params.data.validation_size} validation images leave some of "
                        f"the {workers} workers (train.num_workers) none; hold out at least {workers}")
    if problems:
        raise InvalidInput(problems)
