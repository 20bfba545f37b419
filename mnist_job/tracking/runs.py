"""MLflow: where runs go, checking the server first, and logging that survives outages.

Ray Train V2 rejects ``MLflowLoggerCallback``; instead the driver creates (or
resumes) the run and the rank-0 worker logs to it by run id from inside the
training loop. Each epoch's metrics go in one ``log_batch`` call, so an epoch
is either logged whole or not at all; before logging, the logger asks the
server which epochs it already has, which makes logging exactly-once across
worker restarts and server outages (metrics wait in a buffer and are retried).
"""

from __future__ import annotations

import base64
import logging
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from mnist_job.core.errors import InvalidInput, JobError, ServiceUnavailable

logger = logging.getLogger(__name__)

PRESENCE_KEY = "val_accuracy"  # logged every epoch; its steps say which epochs the server has
RUN_NAME_TAG = "ray.run_name"  # the Ray Train run (checkpoint folder) of this MLflow run
RUN_BASE_TAG = "mnist.run_base"  # the train.run_name it was started under (see start_or_resume_run)


def resolve_tracking_uri(runtime) -> str:
    """``runtime.mlflow_uri``, with the embedded store's folder made when it is the one."""
    if not runtime.tracking_uri:
        (runtime.project_dir / "mlruns").mkdir(parents=True, exist_ok=True)
    return runtime.mlflow_uri


def redact(uri: str) -> str:
    """A URI fit for messages: user:password@ removed."""
    parts = urllib.parse.urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def check_tracking_server(uri: str, timeout: float = 5.0, attempts: int = 3) -> None:
    """Fail fast (well under 30 s) with the endpoint's name when an HTTP server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"

    def probe() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                if response.status != 200:
                    raise _NotReady(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            if exc.code == 403:
                raise ServiceUnavailable(
                    f"MLflow tracking server {redact(uri)} refused the request (HTTP 403): "
                    "add this host name to the server's --allowed-hosts"
                ) from None
            raise _NotReady(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise _NotReady(str(getattr(exc, "reason", exc))) from None

    try:
        Retrying(stop=stop_after_attempt(attempts), wait=wait_fixed(1.0), retry=retry_if_exception_type(_NotReady),
                 reraise=True)(probe)
    except _NotReady as exc:
        raise ServiceUnavailable(f"MLflow tracking server {redact(uri)} is unreachable: {exc}") from None
    _check_credentials(uri, timeout)


def _check_credentials(uri: str, timeout: float) -> None:
    """A server that requires a user (MLflow's basic-auth app) and refuses ours: exit 2 here, naming MLflow and
    the variables MLflow sends the user from, instead of a traceback from the first tracking call."""
    # What MLflow's client will send: MLFLOW_TRACKING_USERNAME/PASSWORD, else ~/.mlflow/credentials (the file the
    # RayJob chart mounts from a Secret).
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    user, password = creds.username or "", creds.password or ""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    if user or password:
        pair = f"{user}:{password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            who = (f"user {user!r}" if user else
                   "an anonymous request (neither MLFLOW_TRACKING_USERNAME nor ~/.mlflow/credentials names a user)")
            raise InvalidInput(f"MLflow tracking server {redact(uri)} refused {who} (HTTP 401): set "
                               "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or mlflow_tracking_username and "
                               "mlflow_tracking_password in the [mlflow] section of ~/.mlflow/credentials, to a user "
                               "of its basic-auth app") from None
    except (urllib.error.URLError, OSError):
        pass  # /health just answered: a blip here is an outage, which the tracking calls retry


class _NotReady(Exception):
    """The server answered with something other than healthy, or not at all: worth another try."""


def get_or_create_experiment(client, name: str, project_dir: Path, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise InvalidInput(f"mlflow.experiment: experiment {name!r} is deleted; restore it or pick another name")
        return experiment.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:"):
        artifact_location = f"{(project_dir / 'mlruns' / 'artifacts').as_uri()}/{name}"
    return client.create_experiment(name, artifact_location=artifact_location)


def git_commit(project_dir: Path, given: str | None) -> str:
    if given:
        return given
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def start_or_resume_run(client, experiment_id: str, run_name: str, params: dict, tags: dict,
                        if_finished: str = "refuse", defining: dict | None = None) -> tuple[str, str, bool]:
    """(run id, run name, resumed) for the runs started under ``run_name``.

    The latest unfinished one (a restarted driver, a retried RayJob) is resumed. When every run of
    that name has finished, ``if_finished`` decides: ``refuse`` (exit 2), or ``new-run``, a new run
    named ``<run_name>-<UTC time>``: a RayJob applied again under the same name trains anew, in its
    own checkpoint folder, and a retry of that one finds it here by its base name and resumes it.
    A resume whose ``defining`` params differ from the ones the run logged is refused (exit 2): its
    checkpoints were made for another computation.
    """
    from mlflow.entities import Param

    earlier = {}
    for tag in (RUN_BASE_TAG, RUN_NAME_TAG):
        for run in client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{run_name}'",
                                      order_by=["attributes.start_time DESC"], max_results=100):
            earlier.setdefault(run.info.run_id, run)
    latest_first = sorted(earlier.values(), key=lambda r: r.info.start_time or 0, reverse=True)
    unfinished = [r for r in latest_first if r.info.status != "FINISHED"]
    if unfinished:
        run = unfinished[0]
        changed = [f"{key}: the run {run_name!r} being resumed used {run.data.params.get(key)!r}, this attempt "
                   f"asks {str(value)!r}" for key, value in sorted((defining or {}).items())
                   if key in run.data.params and run.data.params[key] != str(value)[:6000]]
        if changed:
            raise InvalidInput([*changed, "train.run_name: resume with the run's params, or pick a new run name"])
        client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id, run.data.tags.get(RUN_NAME_TAG, run_name), True
    name = run_name
    if latest_first:
        if if_finished != "new-run":
            raise InvalidInput(
                f"train.run_name: run {run_name!r} already finished (MLflow run {latest_first[0].info.run_id}); "
                "pick a new run name, or set train.if_finished=new-run to train again under a derived name"
            )
        name = f"{run_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    run = client.create_run(experiment_id, run_name=name, tags={RUN_NAME_TAG: name, RUN_BASE_TAG: run_name, **tags})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
    return run.info.run_id, name, False


def is_permanent(exc: BaseException) -> bool:
    """A refusal that retrying cannot fix (a deleted run, a 4xx) rather than an outage (5xx, no connection)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    status = exc.get_http_status_code()
    return 400 <= status < 500 and status not in (408, 429)


def describe_refusal(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{getattr(exc, 'error_code', type(exc).__name__)}: {first[:300]}"


def record_dataset(client, run_id: str, name: str, dvc_md5: str, location: str) -> None:
    """The training data as the run's MLflow dataset input (the UI's Dataset column, ``run.inputs``).

    Digest = its DVC hash, source = where the DVC remote keeps it; recorded once per run, so a
    resumed run keeps the one input it started with.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    if client.get_run(run_id).inputs.dataset_inputs:
        return
    dataset = MetaDataset(source=resolve_dataset_source(location), name=name, digest=dvc_md5.removesuffix(".dir"))
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     tags=[InputTag("mlflow.data.context", "training")])])


class EpochMetricsLogger:
    """Per-epoch metrics to one run, exactly once, surviving server outages.

    ``log(epoch, metrics)`` queues the epoch and tries to send everything queued;
    when the server is down the epochs stay queued and go with the next call.
    ``flush(timeout)`` keeps trying until the queue is empty or time runs out.
    """

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id
        self.pending: dict[int, dict[str, float]] = {}
        self._down_since: float | None = None

    def _logged_epochs(self) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, PRESENCE_KEY)}

    def log(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.pending[epoch] = metrics
        return self._send()

    def backfill(self, history: list[dict[str, float]]) -> bool:
        """After a restore: queue every checkpointed epoch; the ones the server has are skipped."""
        for entry in history:
            self.pending.setdefault(int(entry["epoch"]), {k: v for k, v in entry.items() if k != "epoch"})
        return self._send()

    def _send(self) -> bool:
        from mlflow.entities import Metric

        if not self.pending:
            return True
        try:
            have = self._logged_epochs()
            for epoch in sorted(self.pending):
                if epoch not in have:
                    now = int(time.time() * 1000)
                    batch = [Metric(k, float(v), now, epoch) for k, v in sorted(self.pending[epoch].items())]
                    self.client.log_batch(self.run_id, metrics=batch)
                del self.pending[epoch]
        except Exception as exc:  # noqa: BLE001 (any client or network error: keep the metrics)
            if is_permanent(exc):
                raise JobError(f"MLflow refused the metrics of run {self.run_id} ({describe_refusal(exc)}); "
                               "a refusal is not an outage: not retrying") from None
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.warning(f"mlflow: server unreachable ({type(exc).__name__}); "
                         f"keeping {len(self.pending)} epoch(s) of metrics to retry")
            return False
        if self._down_since is not None:
            logger.info(f"mlflow: server back after {time.monotonic() - self._down_since:.0f} s; buffered metrics sent")
            self._down_since = None
        return True

    def flush(self, timeout: float) -> None:
        def gave_up(_state) -> None:
            raise ServiceUnavailable(f"MLflow tracking server did not take {len(self.pending)} epoch(s) of metrics "
                                     f"within {timeout:.0f} s (epochs {sorted(self.pending)})")

        Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(3.0), retry=retry_if_result(lambda sent: not sent),
                 retry_error_callback=gave_up)(self._send)


def retry(action: Callable[[], object], what: str, timeout: float):
    """Run ``action`` until it succeeds or ``timeout`` passes (for end-of-run artifact logging).

    An outage is retried; a refusal (``is_permanent``) is not: it fails at once, naming it.
    """
    def waiting(state) -> None:
        logger.warning(f"mlflow: could not {what} ({type(state.outcome.exception()).__name__}); retrying")

    try:
        return Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(3.0), reraise=True, before_sleep=waiting,
                        retry=retry_if_exception(lambda exc: not is_permanent(exc)))(action)
    except Exception as exc:  # noqa: BLE001 (whatever the client raised last)
        if is_permanent(exc):
            raise JobError(f"MLflow refused to {what} ({describe_refusal(exc)}); not retrying") from None
        raise ServiceUnavailable(f"MLflow: could not {what} within {timeout:.0f} s: {exc}") from None
