"""Model registration: the end of a run, written to MLflow once, whoever calls it; and the champion.

The test metrics, the plots, the logged model and its registry version are each written exactly once
per run, however often a caller retries after a partial failure; the training loop calls this after
the last epoch (mnist_job/training/loop.py), and it takes only what it logs, so tuning and serving can
call it too. The logged model takes raw pixels (mnist_job/model/export.py).

Each registered version carries tags saying where it came from and how good it is; the alias
``champion`` names the version to use (``mnist-job predict``, ``mnist-job serve``). A new version takes
it only when it beats the champion's test accuracy on a test set of the same size; a tie keeps the
champion. ``mnist-job promote`` moves it by hand.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mnist_job.core.errors import InvalidInput
from mnist_job.core.phases import PREFIX, WORKER_PHASES, PhaseClock, metric_key

FINAL_TAG = "final.logged"  # set last: the whole final logging of the run is done
CHAMPION = "champion"

logger = logging.getLogger(__name__)


def log_final_results(client, tracking_uri: str, run_id: str, model, evaluation, folder: Path, example,
                      registered_model: str | None, step: int, phases: PhaseClock | None = None,
                      image: str | None = None) -> str | None:
    """Test metrics, plots, the model and its registry version: each written once, however often this is retried.

    ``example`` is a few raw uint8 test images (N, 28, 28): the model's input example. A retry after
    a partial failure (the server went away midway) re-reads the run and skips every step whose result
    is already there: the metrics, the artifacts, the logged model (tag ``model.uri``) and the registered
    version (found by run id), so nothing is logged twice. Returns the registered version, or None when
    ``registered_model`` is None. ``phases``, rank 0's clock (mnist_job/core/phases.py), times the steps
    here too and is logged as ``phase_*_s`` metrics, once, just before the run's final tag. ``image``: the
    container image this ran in (Runtime.image), tagged on the registered version.
    """
    clock = phases or PhaseClock()
    run = client.get_run(run_id)
    with clock.phase("mlflow_logging"):
        _log_test_metrics_and_files(client, run, evaluation, folder, step)
    with clock.phase("export"):
        model_uri = _log_model_once(client, tracking_uri, run, model, example)
    version = None
    if registered_model:
        with clock.phase("register"):
            version = _register_once(client, registered_model, model_uri, run, evaluation, image)
    client.set_tag(run_id, "model.registered", f"{registered_model}/{version}" if registered_model else "false")
    if phases is not None and not any(key.startswith(PREFIX) for key in run.data.metrics):
        log_phases(client, run_id, phases)
    client.set_tag(run_id, FINAL_TAG, "true")
    return version


def log_phases(client, run_id: str, clock: PhaseClock, **totals: float) -> None:
    """``clock``'s phases as ``phase_<name>_s`` metrics (a repeated phase's steps as steps), with ``totals``
    (name: seconds) at step 0, in one request."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, value, now, 0) for key, value in totals.items()]
                     + [Metric(key, value, now, step) for key, value, step in clock.metrics()])


def logged_phases(client, run) -> PhaseClock:
    """The phases rank 0 logged with the final results, read back (each epoch a step of ``phase_epoch_s``)."""
    metrics, epoch = run.data.metrics, metric_key("epoch")
    entries = [(key, value, 0) for key, value in metrics.items() if key != epoch]
    if epoch in metrics:
        entries += [(m.key, m.value, m.step) for m in client.get_metric_history(run.info.run_id, epoch)]
    return PhaseClock.from_metrics(entries, WORKER_PHASES)


def _log_test_metrics_and_files(client, run, evaluation, folder: Path, step: int) -> None:
    """The test metrics and the plots and metrics files, each unless an earlier attempt logged them."""
    from mlflow.entities import Metric

    run_id = run.info.run_id
    if "test_accuracy" not in run.data.metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in evaluation.metrics().items()])
    if run.data.tags.get("final.artifacts") != "true":
        client.log_artifacts(run_id, str(folder / "plots"), "plots")
        client.log_artifacts(run_id, str(folder / "metrics"), "metrics")
        client.set_tag(run_id, "final.artifacts", "true")


def _log_model_once(client, tracking_uri: str, run, model, example) -> str:
    """The raw-pixel model logged to the run, unless an earlier attempt did (its URI is the tag ``model.uri``)."""
    import mlflow

    from mnist_job.model.export import log_pixel_model

    run_id = run.info.run_id
    model_uri = run.data.tags.get("model.uri")
    if not model_uri:
        mlflow.set_tracking_uri(tracking_uri)
        with mlflow.start_run(run_id=run_id):
            model_uri = log_pixel_model(model, example)
        # leaving start_run() marks the run FINISHED; only the driver may, once it has written everything
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "model.uri", model_uri)
    return model_uri


def _register_once(client, registered_model: str, model_uri: str, run, evaluation, image: str | None) -> str:
    """The run's registry version (an earlier attempt's when there is one), tagged, crowned if it is the best."""
    import mlflow

    mine = client.search_model_versions(f"name='{registered_model}' and run_id='{run.info.run_id}'")
    version = str(mine[0].version if mine else mlflow.register_model(model_uri, registered_model).version)
    tag_version(client, registered_model, version, run, evaluation, image)
    crown_if_better(client, registered_model, version)
    return version


def tag_version(client, name: str, version: str, run, evaluation, image: str | None = None) -> None:
    """Where the version came from and how it scored; setting a tag twice is harmless, so a retry just repeats."""
    tags = {
        "test_accuracy": f"{evaluation.accuracy:.6f}",
        "test_images": str(evaluation.count),
        "run_id": run.info.run_id,
        "git_commit": run.data.tags.get("git.commit", "unknown"),
        "dvc_data_md5": run.data.tags.get("dvc.data_md5", "unknown"),
    }
    if image:
        tags["image"] = image
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def champion_version(client, name: str):
    """The version the alias names, or None when there is no champion yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        # the server answers INVALID_PARAMETER_VALUE ("alias champion not found"), the SQLite store 404
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(exc):
            return None
        raise


def crown_if_better(client, name: str, version: str) -> bool:
    """Give ``version`` the champion alias when it beats the champion; True when it is the champion afterwards."""
    candidate = client.get_model_version(name, version)
    current = champion_version(client, name)
    if current is not None and str(current.version) == str(version):
        return True
    if current is not None:
        mine, theirs = candidate.tags, current.tags
        if mine.get("test_images") != theirs.get("test_images"):
            logger.info(f"registry: {name} v{version} was scored on {mine.get('test_images')} test images, champion "
                        f"v{current.version} on {theirs.get('test_images')}: not comparable, champion kept")
            return False
        if float(mine.get("test_accuracy", "nan")) <= float(theirs.get("test_accuracy", "nan")):
            logger.info(f"registry: {name} v{version} ({mine.get('test_accuracy')}) does not beat champion "
                        f"v{current.version} ({theirs.get('test_accuracy')}): champion kept")
            return False
    client.set_registered_model_alias(name, CHAMPION, str(version))
    logger.info(f"registry: {name} v{version} is the new {CHAMPION}")
    return True


def promote(client, name: str, version: str) -> str:
    """``mnist-job promote``: the alias onto ``version`` by hand; an unknown model or version is refused (exit 2)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        raise InvalidInput(f"--model: no registered model named {name!r}") from None
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise InvalidInput(f"--version: {name} has no version {version} (versions: "
                           f"{', '.join(map(str, known)) or 'none'})") from None
    client.set_registered_model_alias(name, CHAMPION, str(found.version))
    return str(found.version)
