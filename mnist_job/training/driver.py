"""Stage 3, train: the driver. Checks, then ``TorchTrainer`` on N workers, then the summary.

Order matters: everything that can be found wrong without training (params,
services, data, cluster size) is checked before a worker starts, so a bad
setting costs seconds, not an epoch. The per-worker loop is in loop.py.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from mnist_job.core.config import Params, Runtime
from mnist_job.core.console import chatter_to_file, stderr_to_file, to_log_file_only
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.files import write_atomically
from mnist_job.core.phases import PhaseClock
from mnist_job.data.dvc_store import dvc_lock_hash, dvc_remote_location, ensure_dataset
from mnist_job.data.format import MANIFEST, SPLIT_FILES, manifest_digest
from mnist_job.data.s3 import check_s3_location
from mnist_job.tracking import runs as tracking
from mnist_job.tracking.client import mlflow_client
from mnist_job.tracking.registry import log_phases, logged_phases
from mnist_job.tracking.runs import redact
from mnist_job.training import planning
from mnist_job.training.failures import fit_or_stop
from mnist_job.training.planning import BatchPlan, WorkerPlan, plan_batches, plan_resources, resolve_storage_path
from mnist_job.training.ray_cluster import init_ray, keep_every_log_line, owns_local_cluster, shutdown_local_cluster
from mnist_job.training.ray_output import route_ray_output

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    test_accuracy: float | None
    registered: str
    model_dir: Path
    resumed: bool
    log_file: Path
    phases: str = ""  # where the time went (mnist_job/core/phases.py)

    def summary_lines(self) -> list[str]:
        """What a person needs at the end: the run, how good, where the model and the plots are, where the time
        went, and the log."""
        accuracy = "n/a" if self.test_accuracy is None else f"{self.test_accuracy:.4f}"
        where = redact(self.tracking_uri)
        if where.startswith(("http://", "https://")):
            where = f"{where.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return [f"run id: {self.run_id}", f"test accuracy: {accuracy}", f"registered: {self.registered}",
                f"model: {self.model_dir}",
                f"plots: plots/training_curves.png, plots/confusion_matrix.png in the run's artifacts at {where}",
                *([f"phases: {self.phases}"] if self.phases else []), f"log: {self.log_file}"]


def run_training(params: Params, runtime: Runtime, verbose: bool = False, extra_tags: dict | None = None,
                 callbacks=()) -> TrainingResult:
    """Train, track and register; the terminal gets the job's lines, ``<train.output_dir>/train.log`` all of them.

    ``extra_tags`` go on the MLflow run (a tuning trial: its study run as parent); ``callbacks`` to Ray Train.
    """
    keep_every_log_line()  # before any import of ray
    import mlflow  # noqa: F401 (imported before their loggers are routed: importing them sets those up)
    import ray  # noqa: F401

    log_file = runtime.path(params.train.output_dir) / "train.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")  # this run's story, not the last one's
    with chatter_to_file(log_file, verbose):
        return _train(params, runtime, log_file, verbose, extra_tags, callbacks)


def _train(params: Params, runtime: Runtime, log_file: Path, verbose: bool, extra_tags: dict | None,
           callbacks) -> TrainingResult:
    """The run's phases, in order: each one a function below, timed, each failing before the next one starts."""
    clock, t_start = PhaseClock(), time.monotonic()
    base_name = params.train.run_name or planning.default_run_name()
    with clock.phase("checks"):
        checked = _check_services_and_data(params, runtime)
    # While Ray starts its processes, MLflow's store gets ready (a new SQLite store creates its tables:
    # seconds) and the modules fit needs are imported: side by side where cores are free; on 2 busy cores
    # it only moves time from run start to Ray's start (bench/RESULTS.md).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="meanwhile") as meanwhile:
        tracking_ready = meanwhile.submit(_ready_tracking, params, runtime, checked)
        meanwhile.map(importlib.import_module, FIT_MODULES)  # an import that fails here fails again where used
        with clock.phase("ray_start"):
            cluster = _start_cluster(params, runtime, log_file, verbose)
        with clock.phase("run_start"):  # what is left of it once Ray runs: usually the run's creation alone
            run = _start_run(params, runtime, checked, cluster, base_name, extra_tags, *tracking_ready.result())
    # everything the workers are told, decided here once: they take it as it is
    plan = WorkerPlan(params=params, runtime=runtime, tracking_uri=checked.tracking_uri, run_id=run.run_id,
                      threads_per_worker=cluster.cpus_per_worker, threads_after_training=cluster.threads_after_training,
                      batch=checked.batch, verbose=verbose, progress=cluster.progress, handed_over_at=time.time())
    with clock.phase("fit"):
        fitted = fit_or_stop(_trainer(plan, cluster, run.run_name, checked.storage_path, callbacks), cluster.ray,
                             run.client, run.run_id, base_name, log_file)
    with clock.phase("outputs"):
        result, logged = _final_outputs(fitted, run, checked, log_file, clock.seconds("fit"), t_start)
    if cluster.started_here:  # a local cluster this call started; a connected one is left as it is
        with clock.phase("shutdown"), stderr_to_file(log_file, enabled=not verbose):
            shutdown_local_cluster(cluster.ray)
    return _finish(result, logged, run, clock, time.monotonic() - t_start)


@dataclass(frozen=True)
class _Checked:
    """What the checks found: where the run tracks and checkpoints, and how its data splits over the workers."""

    tracking_uri: str
    storage_path: str
    manifest: dict
    batch: BatchPlan


@dataclass(frozen=True)
class _Cluster:
    """The Ray cluster the run got, and the share of it each worker takes."""

    ray: Any  # the ray module, initialised
    use_gpu: bool
    cpus_per_worker: int
    threads_after_training: int  # rank 0's, for the final evaluation and export (WorkerPlan)
    progress: bool  # a progress bar: the output is a terminal, and not --verbose
    started_here: bool  # a local cluster this call started (and shuts down at the end)


@dataclass(frozen=True)
class _StartedRun:
    client: Any  # MlflowClient
    experiment_id: str
    run_id: str
    run_name: str
    resumed: bool


def _check_services_and_data(params: Params, runtime: Runtime) -> _Checked:
    """Before any work: the services (exit 3, naming the endpoint), then the dataset (exit 4) and its split (exit 2)."""
    storage_path = resolve_storage_path(params.train.storage_path, runtime)
    if runtime.ray_address and not runtime.tracking_uri:
        # On a cluster the embedded SQLite store would live and die with one pod.
        raise InvalidInput("MLFLOW_TRACKING_URI: must be set when running on a Ray cluster (RAY_ADDRESS is set)")
    tracking_uri = tracking.resolve_tracking_uri(runtime)
    tracking.check_tracking_server(tracking_uri)
    if storage_path.startswith("s3://"):
        check_s3_location(storage_path, runtime.s3_endpoint, "train.storage_path")
    if runtime.data_cache and runtime.dvc_remote_url and runtime.dvc_remote_url.startswith("s3://"):
        check_s3_location(runtime.dvc_remote_url, runtime.s3_endpoint, "MNIST_DVC_REMOTE_URL")
    # the data is verified here too, so a corrupt dataset fails in seconds
    data_dir = ensure_dataset(params.data, runtime)
    manifest = json.loads((data_dir / MANIFEST).read_text())  # verified by ensure_dataset
    batch = plan_batches(params, manifest["files"][SPLIT_FILES["train_labels"]]["shape"][0])
    return _Checked(tracking_uri, storage_path, manifest, batch)


def _start_cluster(params: Params, runtime: Runtime, log_file: Path, verbose: bool) -> _Cluster:
    """The Ray cluster and what it can run; what Ray and its workers print goes to the log file."""
    import ray

    t_ray, was_running = time.monotonic(), ray.is_initialized()  # e.g. a tuning trial, in the study's Ray
    with stderr_to_file(log_file, enabled=not verbose):  # Ray's C++ core writes its warnings to fd 2
        ray = init_ray(runtime, dashboard=False)  # a lone run has no use for it (training/ray_cluster.py)
    progress = sys.stdout.isatty() and not verbose
    route_ray_output(log_file, verbose, progress)
    use_gpu, cpus_per_worker = plan_resources(params, ray, runtime)
    resources = ray.cluster_resources()
    logger.info(f"ray: {'connected to ' + runtime.ray_address if runtime.ray_address else 'local cluster'} "
                f"({int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs) in "
                f"{time.monotonic() - t_ray:.1f} s; {params.train.num_workers} workers x "
                f"{'1 GPU' if use_gpu else f'{cpus_per_worker} CPUs'}; details in {log_file}")
    started_here = not was_running and owns_local_cluster()
    final_threads = max(cpus_per_worker, int(resources.get("CPU", 0))) if started_here else cpus_per_worker
    return _Cluster(ray, use_gpu, cpus_per_worker, final_threads, progress, started_here)


# What fit imports on the driver (the trainer and the function it ships to the workers): imported while
# Ray starts, not after it (Python imports each module once, whichever thread asks first).
FIT_MODULES = ("torch", "ray.train.torch", "mnist_job.training.loop", "mnist_job.training.local_trainer")


def _ready_tracking(params: Params, runtime: Runtime, checked: _Checked) -> tuple[Any, str]:
    """(an MlflowClient, its store open; the experiment, created if new): no run yet, so a cluster that fails
    to start leaves none."""
    client = mlflow_client(checked.tracking_uri)
    return client, tracking.get_or_create_experiment(client, params.mlflow.experiment, runtime.project_dir,
                                                     checked.tracking_uri)


def _start_run(params: Params, runtime: Runtime, checked: _Checked, cluster: _Cluster, base_name: str,
               extra_tags: dict | None, client, experiment_id: str) -> _StartedRun:
    """The MLflow run, tagged with what it runs on; resumed when a restarted driver reruns the same run name."""
    data_md5 = dvc_lock_hash(runtime.project_dir, params.data.dir)
    tags = _run_tags(params, runtime, checked, cluster, data_md5) | (extra_tags or {})
    run_id, run_name, resumed = tracking.start_or_resume_run(client, experiment_id, base_name, params.flat(), tags,
                                                             params.train.if_finished, params.run_defining())
    if data_md5:
        tracking.record_dataset(client, run_id, params.data.dir, data_md5,
                                dvc_remote_location(runtime.project_dir, runtime.dvc_remote_url, data_md5))
    logger.info(f"mlflow: {'resuming' if resumed else 'started'} run {run_id} ({run_name}) in experiment "
        f"{params.mlflow.experiment!r} at {tracking.redact(checked.tracking_uri)}")
    return _StartedRun(client, experiment_id, run_id, run_name, resumed)


def _run_tags(params: Params, runtime: Runtime, checked: _Checked, cluster: _Cluster, data_md5: str | None) -> dict:
    """What a run ran: code, data, library versions, workers."""
    import mlflow
    import torch

    commit = tracking.git_commit(runtime.project_dir, runtime.git_commit)
    return {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "dvc.data_md5": data_md5 or "unknown",
        "data.manifest_sha256": manifest_digest(checked.manifest),
        "version.ray": cluster.ray.__version__,
        "version.torch": torch.__version__,
        "version.mlflow": mlflow.__version__,
        "workers.count": str(params.train.num_workers),
        "workers.kind": "gpu" if cluster.use_gpu else "cpu",
        "workers.cpus_each": str(cluster.cpus_per_worker),
        "ray.storage_path": checked.storage_path,
    }


def _trainer(plan: WorkerPlan, cluster: _Cluster, run_name: str, storage_path: str, callbacks):
    """Ray Train's trainer for the plan (a local cluster: without the helper actors only a cluster needs)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mnist_job.training.local_trainer import local_torch_trainer
    from mnist_job.training.loop import train_loop_per_worker

    train = plan.params.train
    return (local_torch_trainer if owns_local_cluster() else TorchTrainer)(
        partial(train_loop_per_worker, plan),
        scaling_config=ScalingConfig(num_workers=train.num_workers, use_gpu=cluster.use_gpu,
                                     resources_per_worker={"CPU": cluster.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks),
        ),
    )


def _final_outputs(fitted, run: _StartedRun, checked: _Checked, log_file: Path, fit_seconds: float,
                   t_start: float):
    """(the result, the run as MLflow holds it): the final model next to the project, and run.json."""
    from mnist_job.training.loop import CHECKPOINT_FILE

    client, run_id = run.client, run.run_id
    out_dir = log_file.parent
    model_dir = out_dir / "model"
    if fitted.checkpoint is None:
        client.set_terminated(run_id, status="FAILED")
        raise JobError("training finished without a checkpoint")
    with fitted.checkpoint.as_directory() as folder:
        write_atomically(model_dir / CHECKPOINT_FILE, (Path(folder) / CHECKPOINT_FILE).read_bytes())
    logged = client.get_run(run_id)
    test_accuracy = logged.data.metrics.get("test_accuracy")
    registered = logged.data.tags.get("model.registered", "false")
    summary = {
        "run_id": run_id, "run_name": run.run_name, "experiment_id": run.experiment_id,
        "tracking_uri": redact(checked.tracking_uri), "test_accuracy": test_accuracy, "registered": registered,
        "fit_wall_s": round(fit_seconds, 1), "total_wall_s": round(time.monotonic() - t_start, 1),
        "storage_path": f"{checked.storage_path}/{run.run_name}",
    }
    write_atomically(out_dir / "run.json", json.dumps(summary, indent=2) + "\n")
    return TrainingResult(run_id, run.experiment_id, checked.tracking_uri, test_accuracy, registered, model_dir,
                          run.resumed, log_file), logged


def _finish(result: TrainingResult, logged, run: _StartedRun, clock: PhaseClock, total_seconds: float) -> TrainingResult:
    """The phase breakdown (rank 0's inside fit) to train.log and MLflow; then FINISHED: a run marked finished
    is complete."""
    phases = f"{clock.describe({'fit': logged_phases(run.client, logged)})}; total {total_seconds:.1f} s"
    to_log_file_only(logger, f"phases: {phases}")
    log_phases(run.client, run.run_id, clock, fit_wall_s=clock.seconds("fit"))
    run.client.set_terminated(run.run_id, status="FINISHED")
    return replace(result, phases=phases)
