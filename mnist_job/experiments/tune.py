"""`mnist-job tune`: a hyperparameter study with Ray Tune, an Optuna searcher and ASHA early stopping.

Each trial is a Tune function trainable that calls ``run_training`` (mnist_job/training/driver.py),
the code path of `mnist-job train`: with Ray Train V2 the trial launches its own TorchTrainer, and
Ray Train's ``TuneReportCallback`` passes every epoch's report on to Tune, so ASHA sees the validation
accuracy per epoch and can stop a weak trial after ``tune.grace_epochs``. MLflow: one parent run for
the study (tag ``mnist.kind=study``), each trial a child run (``mlflow.parentRunId``) with its params
and per-epoch metrics; the parent gets the best config, the best trial's model URI and the plots.
The study's state (Tune's experiment checkpoint, the Optuna searcher's study inside it) lives in
``tune.storage_path/<study>``: running the same ``tune.study_name`` again restores it with
``Tuner.restore`` and runs only the trials that had not finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from mnist_job.core.config import Params, Runtime
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.paths import Output
from mnist_job.core.phases import PhaseClock
from mnist_job.core.tuning_params import SEARCHABLE
from mnist_job.data.dvc_store import CACHED_DATA_OUTPUTS, ensure_dataset
from mnist_job.experiments.compare import KIND_TAG
from mnist_job.experiments.study_report import log_study
from mnist_job.tracking import runs as tracking
from mnist_job.tracking.client import mlflow_client
from mnist_job.tracking.registry import log_phases
from mnist_job.tracking.runs import get_or_create_experiment, resolve_tracking_uri
from mnist_job.training.driver import run_training
from mnist_job.training.planning import resolve_storage_path, when_nodes_join
from mnist_job.training.ray_cluster import init_ray, keep_every_log_line

logger = logging.getLogger(__name__)

STUDY_TAG = "tune.study"
TRIAL_TAG = "tune.trial_id"
ORPHAN_TAG = "tune.orphaned"  # a trial's run that Tune's saved state never knew: its driver was killed first
# What a study writes (checked before it starts: mnist_job/core/paths.py): its trials' outputs under
# train.output_dir, its state under a local tune.storage_path, and the dataset pulled into MNIST_DATA_CACHE.
TUNE_OUTPUTS = (
    *CACHED_DATA_OUTPUTS,
    Output("train.output_dir", lambda args, params, runtime: params.train.output_dir),
    Output("tune.storage_path",
           lambda args, params, runtime: None if "://" in params.tune.storage_path else params.tune.storage_path),
)
OBJECTIVE = "val_accuracy"  # maximized; reported by the training loop every epoch


@dataclass(frozen=True)
class StudyResult:
    study: str
    parent_run_id: str
    best_params: dict[str, float]
    best_value: float
    best_run_id: str | None
    trials: int
    stopped_early: int
    resumed: bool
    orphaned: int = 0
    phases: str = ""  # where the study's time went, on its driver's clock (mnist_job/core/phases.py)


def with_values(params: Params, values: dict) -> Params:
    """``params`` with dotted keys replaced, validated again (a trial's config is checked like any other)."""
    tree = params.model_dump()
    for key, value in values.items():
        section, field = key.split(".", 1)
        tree[section][field] = value
    try:
        return Params.model_validate(tree)
    except Exception as exc:  # noqa: BLE001 (pydantic's ValidationError: name the fields)
        raise InvalidInput(f"a trial's params are invalid: {exc}") from None


def optuna_space(params: Params) -> dict:
    import optuna.distributions as dist

    space = {}
    for key, dim in params.tune.search.items():
        whole = SEARCHABLE[key][1]
        if dim.choices is not None:
            space[key] = dist.CategoricalDistribution([int(v) if whole else float(v) for v in dim.choices])
        elif whole:
            space[key] = dist.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
        else:
            space[key] = dist.FloatDistribution(dim.low, dim.high, log=dim.log)
    return space


def trial_params(base: Params, config: dict, study: str, trial_id: str, cpus_per_worker: int) -> Params:
    values = {SEARCHABLE[key][0]: (int(v) if SEARCHABLE[key][1] else float(v)) for key, v in config.items()}
    values.update({
        "train.epochs": base.tune.max_epochs,
        "train.run_name": f"{study}-{trial_id}",  # a resumed trial resumes its own MLflow run and checkpoints
        "train.output_dir": f"{base.train.output_dir}/tune/{study}/{trial_id}",  # local, even when the study is on S3
        "train.storage_path": f"{base.tune.storage_path}/{study}/train",
        "train.cpus_per_worker": cpus_per_worker,
    })
    return with_values(base, values)


def _run_trial(config: dict, base: Params, runtime: Runtime, study: str, parent_run_id: str,
               cpus_per_worker: int) -> None:
    """One trial, inside a Tune actor: the training of `mnist-job train`, its epochs reported to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    class EpochsBeforeTheLast(TuneReportCallback):
        """Every epoch but the last to Tune. Tune stops a trial once it reports its last epoch (ASHA's
        max_t), which would kill the trainer while it still logs the test metrics and the model; the
        last epoch is reported below, after the training returned."""

        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metrics[0].get("epoch", 0) < base.tune.max_epochs:
                super().after_report(run_context, metrics, checkpoint)

    runtime = runtime.for_this_node()  # the trial's node: its own data cache and project folder (a pod's)
    trial_id = tune.get_context().get_trial_id()
    params = trial_params(base, config, study, trial_id, cpus_per_worker)
    client = mlflow_client(resolve_tracking_uri(runtime))
    done = client.search_runs([get_or_create_experiment(client, params.mlflow.experiment, runtime.project_dir,
                                                        client.tracking_uri)],
                              filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and attributes.status = 'FINISHED'")
    if done:  # finished before the driver was killed, but Tune had not saved that yet: not trained again
        tune.report(_final(done[0].data.metrics) | {"epoch": params.train.epochs, "mlflow_run_id": done[0].info.run_id})
        return
    result = run_training(params, runtime, extra_tags={"mlflow.parentRunId": parent_run_id, STUDY_TAG: study,
                                                       TRIAL_TAG: trial_id},
                          callbacks=[EpochsBeforeTheLast()])
    final = client.get_run(result.run_id).data.metrics
    tune.report(_final(final) | {"epoch": params.train.epochs, "mlflow_run_id": result.run_id})


def _final(metrics: dict) -> dict:
    return {key: metrics[key] for key in (OBJECTIVE, "val_loss", "train_loss", "test_accuracy") if key in metrics}


def study_parent_run(client, experiment_id: str, study: str, params: Params) -> tuple[str, bool]:
    """(run id, resumed): the study's parent run, found again by its tag when the study is resumed."""
    from mlflow.entities import Param

    found = client.search_runs([experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}' and "
                                                              f"tags.`{KIND_TAG}` = 'study'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id, True
    run = client.create_run(experiment_id, run_name=study, tags={KIND_TAG: "study", STUDY_TAG: study})
    logged = {f"tune.{k}": v for k, v in params.tune.model_dump(exclude={"search"}).items()}
    logged.update({f"tune.search.{k}": str(d.model_dump(exclude_none=True)) for k, d in params.tune.search.items()})
    logged.update(params.flat())
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(logged.items())])
    return run.info.run_id, False


def _cpus_per_worker(params: Params, ray, runtime: Runtime) -> int:
    """Each trial's share of the cluster's CPUs, once the nodes it needs have joined (a retried RayJob's)."""
    if params.train.cpus_per_worker:
        return params.train.cpus_per_worker

    def share(resources: dict) -> int:
        cpus = int(resources.get("CPU", 0))
        per_worker = cpus // (params.tune.max_concurrent * params.train.num_workers)
        if per_worker < 1:
            raise InvalidInput(f"tune.max_concurrent: {params.tune.max_concurrent} trials x "
                               f"{params.train.num_workers} workers (train.num_workers) need more than the {cpus} "
                               "CPUs of the Ray cluster")
        return per_worker

    return when_nodes_join(ray, runtime, share)


def run_study(params: Params, runtime: Runtime) -> StudyResult:
    import os

    keep_every_log_line()  # before any import of ray
    # Tune saves the study's state every 10 s or more by default: a trial started and killed inside that
    # window would be unknown to the restored study. Every second, a new trial is saved before its actor
    # has started its MLflow run; finish_study marks any run that still escaped (ORPHAN_TAG).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    study = params.tune.study_name or f"study-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    clock = PhaseClock()
    with clock.phase("checks"):
        storage = resolve_storage_path(params.tune.storage_path, runtime)
        if runtime.ray_address and not runtime.tracking_uri:
            raise InvalidInput("MLFLOW_TRACKING_URI: must be set when running on a Ray cluster (RAY_ADDRESS is set)")
        tracking_uri = tracking.resolve_tracking_uri(runtime)
        tracking.check_tracking_server(tracking_uri)
        ensure_dataset(params.data, runtime)  # a missing or corrupt dataset fails here, not in every trial
    with clock.phase("ray_start"):
        ray = init_ray(runtime)
        cpus_per_worker = _cpus_per_worker(params, ray, runtime)
    with clock.phase("study_start"):
        client = mlflow_client(tracking_uri)
        experiment_id = tracking.get_or_create_experiment(client, params.mlflow.experiment, runtime.project_dir,
                                                          tracking_uri)
        parent, resumed_parent = study_parent_run(client, experiment_id, study, params)
    trainable = tune.with_parameters(_run_trial, base=params, runtime=runtime, study=study, parent_run_id=parent,
                                     cpus_per_worker=cpus_per_worker)
    # the trial only waits on its trainer: no CPU (Ray needs some resource in the bundle: a little memory);
    # its Ray Train workers reserve the CPUs
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 64 * 1024**2})
    path = f"{storage.rstrip('/')}/{study}"
    resumed = tune.Tuner.can_restore(path)
    if resumed:
        logger.info(f"tune: resuming study {study} from {path}")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        searcher = OptunaSearch(space=optuna_space(params), metric=OBJECTIVE, mode="max", seed=params.train.seed)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=params.tune.max_epochs,
                                  grace_period=params.tune.grace_epochs,
                                  reduction_factor=params.tune.reduction_factor)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric=OBJECTIVE, mode="max", num_samples=params.tune.trials,
            max_concurrent_trials=params.tune.max_concurrent, time_budget_s=params.tune.budget_s),
            run_config=tune.RunConfig(name=study, storage_path=storage, verbose=0))
    try:
        with clock.phase("trials"):
            results = tuner.fit()
    except BaseException:
        client.set_terminated(parent, status="KILLED")  # a rerun with the same study name resumes it
        raise
    return finish_study(client, experiment_id, parent, study, params, results, resumed or resumed_parent, clock)


def finish_study(client, experiment_id: str, parent: str, study: str, params: Params, results,
                 resumed: bool, clock: PhaseClock) -> StudyResult:
    """Stopped trials' runs marked, the best trial found, and the parent run given what it should hold: the
    study's phases too (``clock``, this one's ``report`` added), as ``phase_<name>_s`` metrics before FINISHED."""
    with clock.phase("report"):
        rows, best, stopped, orphaned = _report(client, experiment_id, parent, study, params, results)
    log_phases(client, parent, clock)
    client.set_terminated(parent, status="FINISHED")
    return StudyResult(study, parent, best["config"], best["value"], best["run_id"], len(rows), stopped, resumed,
                       orphaned, clock.describe())


def _report(client, experiment_id: str, parent: str, study: str, params: Params, results):
    """The trials' rows (their runs marked where ASHA stopped them), the best one, how many stopped early and
    how many runs were orphaned; the study's files and best config logged to the parent run."""
    children = {r.data.tags.get(TRIAL_TAG): r for r in client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=10000)}
    rows, stopped = [], 0
    orphaned = mark_orphans(client, children, {(r.metrics or {}).get("trial_id") for r in results})
    for result in results:
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        run = children.get(trial_id)
        epochs = int((result.metrics or {}).get("training_iteration", 0))
        value = (result.metrics or {}).get(OBJECTIVE)
        early = result.error is None and epochs < params.tune.max_epochs
        if run is not None and early:
            client.set_tag(run.info.run_id, "tune.stopped_by", f"ASHA at epoch {epochs}")
            # a stop, not a failure: the trial may have ended its run as either when Tune stopped it
            # (KILLED on a signal, FAILED on the error its trainer raised: training/failures.py)
            if run.info.status != "KILLED":
                client.set_terminated(run.info.run_id, status="KILLED")
        stopped += early
        config = {k: v for k, v in (result.config or {}).items() if k in SEARCHABLE}
        rows.append({"trial_id": trial_id, "config": config, "value": value, "epochs": epochs, "early": early,
                     "run_id": run.info.run_id if run else None, "error": result.error is not None})
    scored = [r for r in rows if r["value"] is not None]
    if not scored:
        client.set_terminated(parent, status="FAILED")
        raise JobError(f"tune: no trial of study {study} reported {OBJECTIVE}; see the trials' logs")
    best = max(scored, key=lambda r: (r["epochs"], r["value"]))  # a full-budget trial beats one stopped early
    log_study(client, parent, rows, best, optuna_space(params))
    return rows, best, stopped, orphaned


def mark_orphans(client, children: dict, trial_ids: set) -> int:
    """Runs of trials the study's results do not hold: started after Tune last saved its state and before
    the driver was killed, they ran again under new ids. Tagged, and ended as KILLED if they were left open."""
    orphans = [run for trial_id, run in children.items() if trial_id not in trial_ids]
    for run in orphans:
        client.set_tag(run.info.run_id, ORPHAN_TAG, "started before the study's driver was killed, unknown to "
                                                    "its saved state; the study ran the trial again")
        if run.info.status not in ("FINISHED", "KILLED", "FAILED"):
            client.set_terminated(run.info.run_id, status="KILLED")
    return len(orphans)


def summary(result: StudyResult) -> str:
    best = ", ".join(f"{SEARCHABLE[k][0]}={v:.6g}" for k, v in sorted(result.best_params.items()))
    return "\n".join([
        f"study: {result.study}{' (resumed)' if result.resumed else ''}: {result.trials} trials, "
        f"{result.stopped_early} stopped early by ASHA"
        + (f", {result.orphaned} interrupted run(s) outside the study (tag {ORPHAN_TAG})" if result.orphaned else ""),
        f"best {OBJECTIVE}: {result.best_value:.4f} (MLflow run {result.best_run_id})",
        f"best params: {best}",
        f"study run: {result.parent_run_id} (best params, trials.md, search.png, phase_<name>_s)",
        f"phases: {result.phases}",
        "train with them: mnist-job train " + " ".join(f"--set {SEARCHABLE[k][0]}={v:.6g}"
                                                        for k, v in sorted(result.best_params.items())),
    ])
