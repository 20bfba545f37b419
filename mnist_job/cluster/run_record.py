"""The cost of a RayJob, written to the job's own MLflow run from the user's seat.

The tracking server lives inside the cluster. The API server's service proxy cannot reach it for a signed-in
user: the API server consumes the ``Authorization`` header that MLflow's sign-in needs. So ``submit`` logs
through the tracking URI the user reaches it by (``MLFLOW_TRACKING_URI``: a ``kubectl port-forward`` of the
platform's MLflow Service, an Ingress), as the MLflow user of the usual client settings
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``~/.mlflow/credentials``). Without an http(s) tracking URI it
prints the cost and says how to log it. The run is the one the driver made: its name is the RayJob's
``train.run_name`` (the chart sets it to the RayJob's name).
"""

from __future__ import annotations

import json
import re
import time

import yaml
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from mnist_job.cluster.cost import RunCost
from mnist_job.tracking.client import mlflow_client

HOW = ("set MLFLOW_TRACKING_URI to the platform's MLflow (e.g. `kubectl -n mnist port-forward "
       "svc/mnist-platform-mlflow 5000:5000`, then http://localhost:5000) and your MLflow user to log it")


class NotRecorded(Exception):
    """Why the cost could not be written to MLflow (said in one line; the job's result does not change)."""


def record(tracking_uri: str | None, rayjob: dict, cost: RunCost, images: dict[str, str]) -> str:
    """Log ``cost`` (metrics), the RayJob as the API server holds it and the images the pods ran (artifacts) to
    the job's MLflow run; its run id."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        raise NotRecorded(HOW)
    client = mlflow_client(tracking_uri, fail_fast=True)  # a wrong URI is said in seconds, not minutes
    try:
        run_id = find_run(client, run_name(rayjob))
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in cost.metrics().items()])
        client.log_text(run_id, yaml.safe_dump(resolved(rayjob), sort_keys=False), "submit/rayjob.yaml")
        client.log_text(run_id, json.dumps(images, indent=2, sort_keys=True) + "\n", "submit/images.json")
    except MlflowException as exc:
        raise NotRecorded(f"MLflow at {tracking_uri}: {str(exc).splitlines()[0][:300]}") from None
    return run_id


def find_run(client, name: str) -> str:
    """The id of the newest run named ``name``, in any experiment."""
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"attributes.run_name = '{name}'", max_results=1,
                              order_by=["attributes.start_time DESC"]) if ids else []
    if not runs:
        raise NotRecorded(f"no MLflow run named {name} (the driver had not started its run)")
    return runs[0].info.run_id


def run_name(rayjob: dict) -> str:
    """The Ray Train run name the entrypoint sets (its last ``--set train.run_name=...`` wins, as in the CLI),
    else the RayJob's name."""
    found = re.findall(r"--set[= ]train\.run_name=(\S+)", rayjob["spec"].get("entrypoint", ""))
    return found[-1] if found else rayjob["metadata"]["name"]


def resolved(rayjob: dict) -> dict:
    """The RayJob as the API server holds it (its defaults filled in), without its status and field managers."""
    kept = {k: v for k, v in rayjob.items() if k != "status"}
    kept["metadata"] = {k: v for k, v in rayjob["metadata"].items() if k != "managedFields"}
    return kept
