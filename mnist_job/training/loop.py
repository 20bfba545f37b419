"""What every Ray Train worker runs: load the data, train its shard, report each epoch.

Rank 0 also checkpoints, logs to MLflow (Ray Train V2 has no MLflow callback)
and, after the last epoch, evaluates on the test set, logs the plots and the
model, and registers it when it is good enough. Every rank calls
``ray.train.report`` each epoch; only rank 0 passes a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mnist_job.model.network import images_to_tensor
from mnist_job.training.planning import WorkerPlan

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
    import ray.train
    import ray.train.torch

    from mnist_job.core.console import report_progress, show_on_stdout
    from mnist_job.data.dvc_store import ensure_dataset
    from mnist_job.data.format import load_dataset
    from mnist_job.model.network import build_model, load_checkpoint

    params = plan.params
    runtime = plan.runtime.for_this_node()  # this node's own paths and endpoints
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    show_on_stdout(rank=rank, verbose=plan.verbose)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(plan.threads_per_worker)
    torch.manual_seed(params.train.seed)  # the same initial weights on every rank

    started = time.monotonic()
    data_dir = ensure_dataset(params.data, runtime)
    data = load_dataset(data_dir, checksums=False)  # ensure_dataset verified every file
    (train_x, train_y), (val_x, val_y) = split_train_validation(
        data.train_images, data.train_labels, params.data.validation_size, params.data.train_subset)
    x = torch.as_tensor(train_x).to(device)  # uint8: run_epoch normalises each batch
    y = torch.as_tensor(train_y.astype(np.int64), device=device)
    # validation is sharded too, then summed over ranks
    vx = images_to_tensor(val_x[rank::world], device)
    vy = torch.as_tensor(val_y[rank::world].astype(np.int64), device=device)
    logger.info(f"data ready in {time.monotonic() - started:.1f} s: {len(x)} train / {len(val_x)} validation images "
               f"from {data_dir} on {device}")

    model = ray.train.torch.prepare_model(build_model(params.model.width, params.model.dropout))
    torch.manual_seed(rank_seed(params.train.seed, rank))  # from here on (dropout) every rank draws its own numbers
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.learning_rate, weight_decay=params.train.weight_decay,
                                  betas=tuple(params.train.adam_betas))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.train.learning_rate, total_steps=params.train.epochs * plan.batch.steps_per_epoch)

    history: list[dict] = []
    start_epoch = 1
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder) / CHECKPOINT_FILE, device)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        if len(state.get("rng", [])) == world:  # where each rank's random numbers were: the rerun repeats them
            set_rng_state(state["rng"][rank])
        logger.info(f"resumed from the checkpoint of epoch {state['epoch']}")

    metrics_logger = None
    if rank == 0:
        metrics_logger = _mlflow_logger(plan)
        if history:
            metrics_logger.backfill(history)

    for epoch in range(start_epoch, params.train.epochs + 1):
        t0 = time.monotonic()
        shard = shard_indices(len(x), epoch, params.train.seed, rank, world)
        progress = None
        if rank == 0 and plan.progress:  # the driver's terminal draws it as a bar

            def progress(step, steps, epoch=epoch):
                report_progress(epoch, params.train.epochs, step, steps)

        loss_sum, correct, seen = run_epoch(model, optimizer, scheduler, x, y, shard, plan.batch.per_worker, progress)
        train_time = time.monotonic() - t0
        v_loss, v_correct, v_seen = score(unwrap(model), vx, vy)  # no DDP forward: no hidden collective
        loss_sum, correct, seen, v_loss, v_correct, v_seen = _all_reduce(
            [loss_sum, correct, seen, v_loss, v_correct, v_seen], device, world)
        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_loss": v_loss / max(v_seen, 1),
            "val_accuracy": v_correct / max(v_seen, 1),
            "images_per_s": seen / train_time,
            "epoch_time_s": time.monotonic() - t0,
        }
        history.append(metrics)
        logger.info(f"epoch {epoch}/{params.train.epochs} train_loss={metrics['train_loss']:.4f} "
                   f"train_acc={metrics['train_accuracy']:.4f} val_loss={metrics['val_loss']:.4f} "
                   f"val_acc={metrics['val_accuracy']:.4f} images/s={metrics['images_per_s']:.0f} "
                   f"time={metrics['epoch_time_s']:.1f}s")
        rng = _gather(rng_state(), world)  # every rank takes part; rank 0 keeps them all in the checkpoint
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                            "model_params": params.model.model_dump(), "rng": rng}, Path(folder) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            # after the checkpoint is safe: a restart re-trains at most the epochs not logged yet
            metrics_logger.log(epoch, {k: v for k, v in metrics.items() if k != "epoch"})
        else:
            ray.train.report(metrics, checkpoint=None)

    if rank == 0:
        test = (data.test_images, data.test_labels)
        # the evaluation, plots and model export that follow are the worker's memory peak: the training set,
        # its views and the optimiser's state go first
        del data, train_x, train_y, val_x, val_y, x, y, vx, vy, optimizer, scheduler
        finish_run(plan, unwrap(model), test, history, metrics_logger, device)


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
               history: list[dict], metrics_logger, device) -> None:
    """Rank 0, after the last epoch: test metrics, plots, model, registry. Idempotent across restarts."""
    from mnist_job.evaluation.scoring import evaluate, plot_confusion, plot_curves
    from mnist_job.tracking.registry import FINAL_TAG, log_final_results
    from mnist_job.tracking.runs import retry

    params, client, run_id = plan.params, metrics_logger.client, plan.run_id
    timeout = params.mlflow.flush_timeout_s
    metrics_logger.flush(timeout)
    run = retry(lambda: client.get_run(run_id), "read the run", timeout)
    if run.data.tags.get(FINAL_TAG) == "true":
        logger.info("final evaluation was logged before a restart; nothing to redo")
        return

    n_test = params.data.test_subset or len(test[1])
    test_images, test_labels = test[0][:n_test], test[1][:n_test]
    evaluation = evaluate(model, test_images, test_labels, device)
    logger.info(f"test accuracy {evaluation.accuracy:.4f} on {evaluation.count} images")
    model = model.to("cpu").eval()
    register = evaluation.accuracy >= params.mlflow.register_min_accuracy

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        plot_curves(history, folder / "plots" / "training_curves.png")
        plot_confusion(evaluation, folder / "plots" / "confusion_matrix.png")
        (folder / "metrics").mkdir()
        (folder / "metrics" / "history.json").write_text(json.dumps(history, indent=2))
        (folder / "metrics" / "test_metrics.json").write_text(json.dumps(evaluation.to_json(), indent=2))

        def log_everything():
            return log_final_results(client, plan.tracking_uri, run_id, model, evaluation, folder,
                                     np.asarray(test_images[:2]),
                                     params.mlflow.registered_model if register else None,
                                     int(history[-1]["epoch"]) if history else 0)

        version = retry(log_everything, "log the final model and plots", timeout)
    if register:
        logger.info(f"registered {params.mlflow.registered_model} version {version}")
    else:
        logger.info(f"not registered: test accuracy {evaluation.accuracy:.4f} < mlflow.register_min_accuracy "
                f"{params.mlflow.register_min_accuracy}")
