"""The driver's plan for the workers: the per-worker batch computed and checked once, the plan frozen,
and handed to the workers as it is (no dict of string keys).

No Ray cluster: the plan is built as the driver builds it, and Ray Train's trainer is only constructed.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from functools import partial

import numpy as np
import pytest

from mnist_job.core.config import Runtime, load_params
from mnist_job.core.errors import InvalidInput
from mnist_job.training.epoch import shard_indices, split_train_validation
from mnist_job.training.loop import train_loop_per_worker
from mnist_job.training.planning import BatchPlan, WorkerPlan, plan_batches, plan_resources


def params(*overrides: str):
    return load_params(None, list(overrides))


def plan_for(batch: BatchPlan, **changes) -> WorkerPlan:
    fields = dict(params=params(), runtime=Runtime(project_dir="/tmp/project"), tracking_uri="sqlite:///x.db",
                  run_id="r1", threads_per_worker=1, threads_after_training=1, batch=batch, verbose=False, progress=False, handed_over_at=0.0)
    return WorkerPlan(**(fields | changes))


def test_the_batch_is_split_over_the_workers_as_the_epochs_run_it():
    p = params("train.batch_size=256", "train.num_workers=3", "data.train_subset=10000", "data.validation_size=1000")
    batch = plan_batches(p, train_images=60000)
    assert batch == BatchPlan(per_worker=85, steps_per_epoch=35, train_images=9000)
    # what a rank's epoch then takes: its share of the order, in whole batches (run_epoch)
    (x, _), _ = split_train_validation(np.zeros((10000, 28, 28), np.uint8), np.zeros(10000, np.int64), 1000, 10000)
    share = shard_indices(len(x), epoch=1, seed=0, rank=2, world=3)
    assert len(share) // batch.per_worker == batch.steps_per_epoch


@pytest.mark.parametrize(("overrides", "field"), [
    (("train.batch_size=4096", "data.train_subset=3000", "data.validation_size=1000"), "train.batch_size"),
    (("train.num_workers=4", "data.validation_size=3"), "data.validation_size"),
])
def test_a_batch_or_hold_out_a_rank_cannot_use_is_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidInput) as refused:
        plan_batches(params(*overrides), train_images=60000)
    assert str(refused.value).count(field) >= 1, refused.value
    assert "Traceback" not in str(refused.value)


def test_the_batch_message_says_what_each_worker_would_need():
    with pytest.raises(InvalidInput, match=r"train\.batch_size: 4096 images per step need at least 2048 training "
                                           r"images on each of 2 workers; the training set has 2000 \(1000 per worker\)"):
        plan_batches(params("train.batch_size=4096", "data.train_subset=3000", "data.validation_size=1000"), 60000)


def test_the_plan_is_frozen_and_travels_as_it_is():
    plan = plan_for(plan_batches(params(), 60000))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.run_id = "another"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.batch.per_worker = 1  # type: ignore[misc]
    import cloudpickle  # as Ray sends the training function and its arguments to each worker

    assert pickle.loads(cloudpickle.dumps(plan)) == plan


def test_the_workers_take_the_plan_and_nothing_else():
    """The trainer gets the worker function bound to the plan, and no train_loop_config to read back by key."""
    from mnist_job.training import driver

    (parameter,) = inspect.signature(train_loop_per_worker).parameters.values()
    assert parameter.annotation in (WorkerPlan, "WorkerPlan")
    plan = plan_for(plan_batches(params(), 60000))
    cluster = driver._Cluster(ray=None, use_gpu=False, cpus_per_worker=1, threads_after_training=1, progress=False,
                              started_here=False)
    trainer = driver._trainer(plan, cluster, "run", "/tmp/ray-storage", callbacks=())
    function = trainer.train_loop_per_worker
    assert isinstance(function, partial) and function.func is train_loop_per_worker
    assert function.args == (plan,) and function.args[0] is plan and not function.keywords
    assert not trainer.train_loop_config


class JoiningCluster:
    """A Ray cluster whose nodes join over time: ``cluster_resources()`` answers from a list, one per call."""

    def __init__(self, *resources: dict):
        self.answers = list(resources)

    def cluster_resources(self) -> dict:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_on_a_running_ray_cluster_the_driver_waits_for_the_workers_to_join():
    # a retried RayJob's new head takes the job before its workers are back (tests/kubernetes/test_faults.py)
    joining = JoiningCluster({"CPU": 0}, {"CPU": 0}, {"CPU": 2})
    remote = Runtime(project_dir="/tmp/project", ray_address="ray-head:6379")
    assert plan_resources(params("train.num_workers=2"), joining, remote, poll_s=0.01) == (False, 1)
    assert joining.answers == [{"CPU": 2}]


def test_the_local_cluster_and_a_cluster_that_never_grows_are_refused_naming_the_field():
    local = Runtime(project_dir="/tmp/project")
    with pytest.raises(InvalidInput, match="train.num_workers: 2 workers x 1 CPUs exceed the 0 CPUs"):
        plan_resources(params("train.num_workers=2"), JoiningCluster({"CPU": 0}, {"CPU": 2}), local)
    remote = Runtime(project_dir="/tmp/project", ray_address="ray-head:6379")
    with pytest.raises(InvalidInput, match="train.use_gpu: true, but the Ray cluster has no GPU"):
        plan_resources(params("train.use_gpu=true"), JoiningCluster({"CPU": 4}), remote, join_timeout_s=0.05,
                       poll_s=0.01)
