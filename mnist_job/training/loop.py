"""What every Ray Train worker runs: load the data, train its shard, report each epoch.

Rank 0 also checkpoints, logs to MLflow (Ray Train V2 has no MLflow callback)
and, after the last epoch, evaluates on the test set, logs the plots and the
model, and registers it when it is good enough. Every rank calls
``ray.train.report`` each epoch; only rank 0 passes a checkpoint.

A worker is told everything by the driver's ``WorkerPlan`` (mnist_job/training/planning.py) and
computes none of it again. ``train_loop_per_worker`` reads as its phases, each a function; rank 0
times them (mnist_job/core/phases.py) and logs them with the final results.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mnist_job.core.console import report_progress, show_on_stdout
from mnist_job.core.phases import PhaseClock
from mnist_job.data.dvc_store import ensure_dataset
from mnist_job.data.format import load_dataset
from mnist_job.model.network import images_to_tensor
from mnist_job.tracking.client import mlflow_client
from mnist_job.tracking.registry import FINAL_TAG, log_final_results
from mnist_job.tracking.runs import EpochMetricsLogger, retry
from mnist_job.training.epoch import (
    Shard,
    TrainingState,
    Worker,
    all_reduce,
    gather,
    rank_seed,
    rng_state,
    run_epoch,
    score,
    set_rng_state,
    shard_indices,
    split_train_validation,
    unwrap,
)
from mnist_job.training.planning import WorkerPlan

CHECKPOINT_FILE = "checkpoint.pt"


logger = logging.getLogger(__name__)


def train_loop_per_worker(plan: WorkerPlan) -> None:
    """One worker's run, phase by phase: its data, its model (restored from the last checkpoint), the epochs
    (each followed by a checkpoint), and on rank 0 the final evaluation and logging."""
    clock = PhaseClock()  # rank 0's goes to MLflow with the final results, where the driver reads it back
    worker = _join(plan)
    clock.add("workers_ready", max(0.0, time.time() - plan.handed_over_at))  # on the driver's clock
    with clock.phase("data_ready"):
        shard = _load_shard(plan, worker)
    with clock.phase("model_ready"):
        training = _build_and_restore(plan, worker)
    for epoch in range(training.start_epoch, plan.params.train.epochs + 1):
        with clock.phase("epoch", step=epoch):
            metrics = _train_epoch(plan, worker, shard, training, epoch)
        with clock.phase("checkpoint"):
            _checkpoint(plan, worker, training, epoch, metrics)
    if worker.rank == 0:
        test = (shard.data.test_images, shard.data.test_labels)
        # the evaluation, plots and model export that follow are the worker's memory peak: the training set,
        # its views and the optimiser's state go first
        del shard
        training.optimizer = training.scheduler = None
        finish_run(plan, unwrap(training.model), test, training.history, training.metrics_logger, worker.device,
                   clock)


def _join(plan: WorkerPlan) -> Worker:
    """This worker's rank, device, threads and lines; the same seed on every rank for the initial weights."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    show_on_stdout(rank=rank, verbose=plan.verbose)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(plan.threads_per_worker)
    torch.manual_seed(plan.params.train.seed)  # the same initial weights on every rank
    return Worker(rank, world, device)


def _load_shard(plan: WorkerPlan, worker: Worker) -> Shard:
    """The dataset from this node's copy (pulled once per node), split, on this worker's device."""
    data_params, rank, world, device = plan.params.data, worker.rank, worker.world, worker.device
    started = time.monotonic()
    data_dir = ensure_dataset(data_params, plan.runtime.for_this_node())  # this node's own paths and endpoints
    data = load_dataset(data_dir, checksums=False)  # ensure_dataset verified every file
    (train_x, train_y), (val_x, val_y) = split_train_validation(
        data.train_images, data.train_labels, data_params.validation_size, data_params.train_subset)
    x = torch.as_tensor(train_x).to(device)  # uint8: run_epoch normalises each batch
    y = torch.as_tensor(train_y.astype(np.int64), device=device)
    # validation is sharded too, then summed over ranks
    vx = images_to_tensor(val_x[rank::world], device)
    vy = torch.as_tensor(val_y[rank::world].astype(np.int64), device=device)
    logger.info(f"data ready in {time.monotonic() - started:.1f} s: {len(x)} train / {len(val_x)} validation images "
               f"from {data_dir} on {device}")
    return Shard(data, x, y, vx, vy)


def _build_and_restore(plan: WorkerPlan, worker: Worker) -> TrainingState:
    """The model (wrapped for DDP), its optimiser and schedule, restored from the run's last checkpoint if any;
    rank 0's MLflow logger, given the restored epochs the server may not have yet."""
    import ray.train.torch

    from mnist_job.model.network import build_model

    train = plan.params.train
    model = ray.train.torch.prepare_model(build_model(plan.params.model.width, plan.params.model.dropout))
    torch.manual_seed(rank_seed(train.seed, worker.rank))  # from here on (dropout) every rank draws its own numbers
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay,
                                  betas=tuple(train.adam_betas))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train.learning_rate, total_steps=train.epochs * plan.batch.steps_per_epoch)
    training = TrainingState(model, optimizer, scheduler)
    _restore(training, worker)
    if worker.rank == 0:
        training.metrics_logger = _mlflow_logger(plan)
        if training.history:
            training.metrics_logger.backfill(training.history)
    return training


def _restore(training: TrainingState, worker: Worker) -> None:
    """From Ray Train's last checkpoint of this run, if it has one: where every rank left off."""
    import ray.train

    from mnist_job.model.network import load_checkpoint

    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(Path(folder) / CHECKPOINT_FILE, worker.device)
    unwrap(training.model).load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    training.history = state["history"]
    training.start_epoch = state["epoch"] + 1
    if len(state.get("rng", [])) == worker.world:  # where each rank's random numbers were: the rerun repeats them
        set_rng_state(state["rng"][worker.rank])
    logger.info(f"resumed from the checkpoint of epoch {state['epoch']}")


def _train_epoch(plan: WorkerPlan, worker: Worker, shard: Shard, training: TrainingState, epoch: int) -> dict:
    """One epoch on this rank's share, scored on its validation slice; the metrics summed over the ranks."""
    epochs, rank, world = plan.params.train.epochs, worker.rank, worker.world
    t0 = time.monotonic()
    order = shard_indices(len(shard.x), epoch, plan.params.train.seed, rank, world)
    progress = None
    if rank == 0 and plan.progress:  # the driver's terminal draws it as a bar

        def progress(step, steps):
            report_progress(epoch, epochs, step, steps)

    model = training.model
    loss_sum, correct, seen = run_epoch(model, training.optimizer, training.scheduler, shard.x, shard.y, order,
                                        plan.batch.per_worker, progress)
    train_time = time.monotonic() - t0
    v_loss, v_correct, v_seen = score(unwrap(model), shard.vx, shard.vy)  # no DDP forward: no hidden collective
    loss_sum, correct, seen, v_loss, v_correct, v_seen = all_reduce(
        [loss_sum, correct, seen, v_loss, v_correct, v_seen], worker.device, world)
    metrics = {
        "epoch": epoch,
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "val_loss": v_loss / max(v_seen, 1),
        "val_accuracy": v_correct / max(v_seen, 1),
        "images_per_s": seen / train_time,
        "epoch_time_s": time.monotonic() - t0,
    }
    training.history.append(metrics)
    logger.info(f"epoch {epoch}/{epochs} train_loss={metrics['train_loss']:.4f} "
               f"train_acc={metrics['train_accuracy']:.4f} val_loss={metrics['val_loss']:.4f} "
               f"val_acc={metrics['val_accuracy']:.4f} images/s={metrics['images_per_s']:.0f} "
               f"time={metrics['epoch_time_s']:.1f}s")
    return metrics


def _checkpoint(plan: WorkerPlan, worker: Worker, training: TrainingState, epoch: int, metrics: dict) -> None:
    """Every rank reports the epoch to Ray Train; rank 0 with the checkpoint, then logs the epoch to MLflow."""
    import ray.train

    rng = gather(rng_state(), worker.world)  # every rank takes part; rank 0 keeps them all in the checkpoint
    if worker.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"model": unwrap(training.model).state_dict(), "optimizer": training.optimizer.state_dict(),
                    "scheduler": training.scheduler.state_dict(), "epoch": epoch, "history": training.history,
                    "model_params": plan.params.model.model_dump(), "rng": rng}, Path(folder) / CHECKPOINT_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    # after the checkpoint is safe: a restart re-trains at most the epochs not logged yet
    training.metrics_logger.log(epoch, {k: v for k, v in metrics.items() if k != "epoch"})


def _mlflow_logger(plan: WorkerPlan):
    # Fail a request in seconds rather than minutes so an outage only delays logging (the buffer retries).
    return EpochMetricsLogger(mlflow_client(plan.tracking_uri, fail_fast=True), plan.run_id)


def finish_run(plan: WorkerPlan, model: torch.nn.Module, test: tuple[np.ndarray, np.ndarray],
               history: list[dict], metrics_logger, device, clock: PhaseClock | None = None) -> None:
    """Rank 0, after the last epoch: test metrics, plots, model, registry. Idempotent across restarts.

    ``clock``: rank 0's phases so far; the final ones are added, and all of them logged with the results.
    """
    params, client, run_id = plan.params, metrics_logger.client, plan.run_id
    clock = clock or PhaseClock()
    timeout = params.mlflow.flush_timeout_s
    with clock.phase("mlflow_logging"):
        metrics_logger.flush(timeout)
        run = retry(lambda: client.get_run(run_id), "read the run", timeout)
    if run.data.tags.get(FINAL_TAG) == "true":
        logger.info("final evaluation was logged before a restart; nothing to redo")
        return
    with clock.phase("evaluate"):
        evaluation, example = _evaluate_on_test(plan, model, test, device)
        model = model.to("cpu").eval()
    register = evaluation.accuracy >= params.mlflow.register_min_accuracy

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with clock.phase("plots"):
            _write_plots_and_metrics(folder, history, evaluation)

        def log_everything():
            return log_final_results(client, plan.tracking_uri, run_id, model, evaluation, folder, example,
                                     params.mlflow.registered_model if register else None,
                                     int(history[-1]["epoch"]) if history else 0, phases=clock,
                                     image=plan.runtime.for_this_node().image)  # rank 0's pod's image

        version = retry(log_everything, "log the final model and plots", timeout)
    if register:
        logger.info(f"registered {params.mlflow.registered_model} version {version}")
    else:
        logger.info(f"not registered: test accuracy {evaluation.accuracy:.4f} < mlflow.register_min_accuracy "
                f"{params.mlflow.register_min_accuracy}")


def _evaluate_on_test(plan: WorkerPlan, model: torch.nn.Module, test: tuple[np.ndarray, np.ndarray], device):
    """(the evaluation on the test set, or its first ``data.test_subset`` images; two of them as the model's example),
    on the threads rank 0 has once the other ranks are done."""
    from mnist_job.evaluation.scoring import evaluate

    if device.type == "cpu":
        torch.set_num_threads(plan.threads_after_training)
    n_test = plan.params.data.test_subset or len(test[1])
    test_images, test_labels = test[0][:n_test], test[1][:n_test]
    evaluation = evaluate(model, test_images, test_labels, device)
    logger.info(f"test accuracy {evaluation.accuracy:.4f} on {evaluation.count} images")
    return evaluation, np.asarray(test_images[:2])


def _write_plots_and_metrics(folder: Path, history: list[dict], evaluation) -> None:
    """The run's plots and metrics files, as the run's artifacts hold them (plots/, metrics/)."""
    from mnist_job.evaluation.scoring import plot_confusion, plot_curves

    plot_curves(history, folder / "plots" / "training_curves.png")
    plot_confusion(evaluation, folder / "plots" / "confusion_matrix.png")
    (folder / "metrics").mkdir()
    (folder / "metrics" / "history.json").write_text(json.dumps(history, indent=2))
    (folder / "metrics" / "test_metrics.json").write_text(json.dumps(evaluation.to_json(), indent=2))
