"""The one place an ``MlflowClient`` is built, and where MLflow's HTTP timeouts and retries are decided.

MLflow reads its timeouts from the environment at every request, so they hold for the whole process:
``fail_fast`` sets them for every client and every ``mlflow.*`` call made by that process afterwards.
"""

from __future__ import annotations

import os

# A request fails in seconds (10 s, one retry) instead of after MLflow's defaults (120 s, 7 retries with
# backoff: minutes). Where an outage is ridden out by our own retries (tracking/runs.py's retry and the
# epoch buffer), or a comparison should say the server went away, a fast failure is what is wanted.
FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def mlflow_client(tracking_uri: str, fail_fast: bool = False):
    """An ``MlflowClient`` for ``tracking_uri``.

    ``fail_fast``: this process's requests fail in seconds (``FAIL_FAST_ENV``; a value already set in the
    environment wins). Rank 0 of a training run and ``compare`` use it. The driver, tuning, the registry
    commands, serving and bench keep MLflow's defaults: nothing of ours retries their requests, so MLflow's
    own retries are what carries them over a short outage.
    """
    from mlflow import MlflowClient  # 1.3 s to import: only the commands that talk to MLflow pay it

    if fail_fast:
        for name, value in FAIL_FAST_ENV.items():
            os.environ.setdefault(name, value)
    return MlflowClient(tracking_uri=tracking_uri)
