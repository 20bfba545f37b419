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
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mnist_job.core.phases import PhaseClock
from mnist_job.model.network import images_to_tensor
from mnist_job.training.planning import WorkerPlan

if TYPE_CHECKING:
    from mnist_job.data.format import MnistArrays
    from mnist_job.tracking.runs import EpochMetricsLogger

CHECKPOINT_FILE = "checkpoint.pt"


logger = logging.getLogger(__name__)


def split_train_validation(train_images: np.ndarray, train_labels: np.ndarray, validation_size: int, subset: int):
    """Deterministic: the last ``validation_size`` images (of the subset) are held out."""
    if subset:
        train_images, train_labels = train_images[:subset], train_labels[:subset]
    cut = len(train_images) - validation_size
    return (train_images[:cut], train_labels[:cut]), (train_images[cut:], train_labels[cut:])


def shard_indices(n: int, epoch: int, seed: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of one epoch's shuffled order; every rank gets the same count."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    per_rank = n // world
    return order[rank * per_rank : (rank + 1) * per_rank]


def _all_reduce(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def rank_seed(seed: int, rank: int) -> int:
    """A seed per rank: dropout masks differ between ranks but repeat from run to run."""
    return seed * 1_000_003 + rank + 1


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"].cpu())  # the checkpoint may have been mapped onto the GPU
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def _gather(value, world: int) -> list:
    if world == 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def run_epoch(model, optimizer, scheduler, images: torch.Tensor, y: torch.Tensor, shard: torch.Tensor,
              local_batch: int, on_progress=None):
    """One pass over this rank's shard; returns (loss sum, correct, seen).

    ``images`` are the raw uint8 pixels (N, 28, 28), normalised a batch at a time (four element-wise
    operations): a float32 copy of the whole training set would cost every worker 172 MB more.
    ``on_progress(step, steps)``, if given, is called about 20 times per epoch (rank 0's progress bar).
    """
    if images.dtype != torch.uint8:  # normalising normalised floats again would train on garbage, silently
        raise TypeError(f"run_epoch takes uint8 pixels, not {images.dtype}")
    model.train()
    loss_fn = torch.nn.functional.cross_entropy
    loss_sum = torch.zeros((), device=images.device, dtype=torch.float64)
    correct = torch.zeros((), device=images.device, dtype=torch.int64)
    steps = len(shard) // local_batch  # equal on every rank: no rank waits on a missing all-reduce
    shard = shard.to(images.device)
    every = max(1, steps // 20)
    for step in range(steps):
        if on_progress and step % every == 0:
            on_progress(step, steps)
        idx = shard[step * local_batch : (step + 1) * local_batch]
        xb, yb = images_to_tensor(images[idx], images.device), y[idx]
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
    return loss_sum.item(), correct.item(), steps * local_batch


@torch.no_grad()
def score(model, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> tuple[float, float, int]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch])
        loss_sum += torch.nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return loss_sum, correct, len(x)


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


@dataclass(frozen=True)
class _Worker:
    """This worker's place in the group."""

    rank: int
    world: int
    device: torch.device


@dataclass(frozen=True)
class _Shard:
    """What this rank trains and scores on: the training set (each epoch it takes its share of the order)
    and its own slice of the validation set, summed over the ranks after each epoch."""

    data: MnistArrays  # the whole dataset as loaded: its test split is rank 0's final evaluation
    x: torch.Tensor  # uint8 training images: run_epoch normalises each batch
    y: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor


@dataclass
class _Training:
    """What the epochs change and a checkpoint keeps; ``metrics_logger`` on rank 0 only."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1
    metrics_logger: EpochMetricsLogger | None = None


def _join(plan: WorkerPlan) -> _Worker:
    """This worker's rank, device, threads and lines; the same seed on every rank for the initial weights."""
    import ray.train
    import ray.train.torch

    from mnist_job.core.console import show_on_stdout

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    show_on_stdout(rank=rank, verbose=plan.verbose)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(plan.threads_per_worker)
    torch.manual_seed(plan.params.train.seed)  # the same initial weights on every rank
    return _Worker(rank, world, device)


def _load_shard(plan: WorkerPlan, worker: _Worker) -> _Shard:
    """The dataset from this node's copy (pulled once per node), split, on this worker's device."""
    from mnist_job.data.dvc_store import ensure_dataset
    from mnist_job.data.format import load_dataset

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
    return _Shard(data, x, y, vx, vy)


def _build_and_restore(plan: WorkerPlan, worker: _Worker) -> _Training:
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
    training = _Training(model, optimizer, scheduler)
    _restore(training, worker)
    if worker.rank == 0:
        training.metrics_logger = _mlflow_logger(plan)
        if training.history:
            training.metrics_logger.backfill(training.history)
    return training


def _restore(training: _Training, worker: _Worker) -> None:
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


def _train_epoch(plan: WorkerPlan, worker: _Worker, shard: _Shard, training: _Training, epoch: int) -> dict:
    """One epoch on this rank's share, scored on its validation slice; the metrics summed over the ranks."""
    from mnist_job.core.console import report_progress

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
    loss_sum, correct, seen, v_loss, v_correct, v_seen = _all_reduce(
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


def _checkpoint(plan: WorkerPlan, worker: _Worker, training: _Training, epoch: int, metrics: dict) -> None:
    """Every rank reports the epoch to Ray Train; rank 0 with the checkpoint, then logs the epoch to MLflow."""
    import ray.train

    rng = _gather(rng_state(), worker.world)  # every rank takes part; rank 0 keeps them all in the checkpoint
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


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _mlflow_logger(plan: WorkerPlan):
    from mlflow import MlflowClient

    from mnist_job.tracking.runs import EpochMetricsLogger

    # Fail a request in seconds rather than minutes so an outage only delays logging.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    client = MlflowClient(tracking_uri=plan.tracking_uri)
    return EpochMetricsLogger(client, plan.run_id)


def finish_run(plan: WorkerPlan, model: torch.nn.Module, test: tuple[np.ndarray, np.ndarray],
               history: list[dict], metrics_logger, device, clock: PhaseClock | None = None) -> None:
    """Rank 0, after the last epoch: test metrics, plots, model, registry. Idempotent across restarts.

    ``clock``: rank 0's phases so far; the final ones are added, and all of them logged with the results.
    """
    from mnist_job.tracking.registry import FINAL_TAG, log_final_results
    from mnist_job.tracking.runs import retry

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
        evaluation, example = _evaluate_on_test(params, model, test, device)
        model = model.to("cpu").eval()
    register = evaluation.accuracy >= params.mlflow.register_min_accuracy

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with clock.phase("plots"):
            _write_plots_and_metrics(folder, history, evaluation)

        def log_everything():
            return log_final_results(client, plan.tracking_uri, run_id, model, evaluation, folder, example,
                                     params.mlflow.registered_model if register else None,
                                     int(history[-1]["epoch"]) if history else 0, phases=clock)

        version = retry(log_everything, "log the final model and plots", timeout)
    if register:
        logger.info(f"registered {params.mlflow.registered_model} version {version}")
    else:
        logger.info(f"not registered: test accuracy {evaluation.accuracy:.4f} < mlflow.register_min_accuracy "
                f"{params.mlflow.register_min_accuracy}")


def _evaluate_on_test(params, model: torch.nn.Module, test: tuple[np.ndarray, np.ndarray], device):
    """(the evaluation on the test set, or its first ``data.test_subset`` images; two of them as the model's example)."""
    from mnist_job.evaluation.scoring import evaluate

    n_test = params.data.test_subset or len(test[1])
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
