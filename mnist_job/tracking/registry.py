"""Model registration: the end of a run, written to MLflow once, whoever calls it.

The test metrics, the plots, the logged model and its registry version are each written exactly once
per run, however often a caller retries after a partial failure; the training loop calls this after
the last epoch (mnist_job/training/loop.py), and it takes only what it logs, so tuning and serving can
call it too.
"""

from __future__ import annotations

import time
from pathlib import Path

FINAL_TAG = "final.logged"  # set last: the whole final logging of the run is done


def log_final_results(client, tracking_uri: str, run_id: str, model, evaluation, folder: Path, example,
                      registered_model: str | None, step: int) -> str | None:
    """Test metrics, plots, the model and its registry version: each written once, however often this is retried.

    A retry after a partial failure (the server went away midway) re-reads the run and skips every
    step whose result is already there: the metrics, the artifacts, the logged model (tag
    ``model.uri``) and the registered version (found by run id), so nothing is logged twice.
    Returns the registered version, or None when ``registered_model`` is None.
    """
    import mlflow
    from mlflow.entities import Metric

    run = client.get_run(run_id)
    if "test_accuracy" not in run.data.metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in evaluation.metrics().items()])
    if run.data.tags.get("final.artifacts") != "true":
        client.log_artifacts(run_id, str(folder / "plots"), "plots")
        client.log_artifacts(run_id, str(folder / "metrics"), "metrics")
        client.set_tag(run_id, "final.artifacts", "true")
    model_uri = run.data.tags.get("model.uri")
    if not model_uri:
        mlflow.set_tracking_uri(tracking_uri)
        with mlflow.start_run(run_id=run_id):
            model_uri = mlflow.pytorch.log_model(model, name="model", input_example=example).model_uri
        # leaving start_run() marks the run FINISHED; only the driver may, once it has written everything
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "model.uri", model_uri)
    version = None
    if registered_model:
        mine = client.search_model_versions(f"name='{registered_model}' and run_id='{run_id}'")
        version = str(mine[0].version if mine else mlflow.register_model(model_uri, registered_model).version)
    client.set_tag(run_id, "model.registered", f"{registered_model}/{version}" if registered_model else "false")
    client.set_tag(run_id, FINAL_TAG, "true")
    return version
