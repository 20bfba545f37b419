"""The platform's MLflow users: run by the chart's mlflow-users Job as MLflow's admin.

Creates (or, when it exists, resets the password of) the training and the serving user, creates the
experiment and the registered model the training job writes to when they are missing, and grants the
training user EDIT on both and the serving user READ on both (the model's artifacts are the experiment's:
MLflow refuses their download without READ there), nothing else (the server's default permission covers
the rest: NO_PERMISSIONS by default). Safe to run again: every step is a get-or-create or an upsert.

Env: MLFLOW_TRACKING_URI, ADMIN_CREDENTIALS_DIR, TRAINING_CREDENTIALS_DIR and SERVING_CREDENTIALS_DIR
(each holds the files `username` and `password`, mounted from the user's Secret: no password is an env
var of the pod),
MLFLOW_EXPERIMENT, MLFLOW_REGISTERED_MODEL, WAIT_S (how long to wait for the server).
Exit: 0 done, 2 refused (e.g. a wrong admin password), 3 the server did not answer.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def wait_for(uri: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(2)
    print(f"mlflow-users: MLflow server {uri} did not answer /health within {timeout:.0f} s ({last})", file=sys.stderr)
    sys.exit(3)


def read_user(folder: str) -> tuple[str, str]:
    """(username, password) from the files of a mounted Secret; exit 2 naming the file that is missing."""
    try:
        return tuple((Path(folder) / name).read_text().strip() for name in ("username", "password"))
    except OSError as exc:
        print(f"mlflow-users: cannot read a credentials file: {exc}", file=sys.stderr)
        sys.exit(2)


def grant(auth, user: str, resource_type: str, resource_id: str, permission: str) -> None:
    """The user's permission on the resource, whatever it was before."""
    from mlflow.exceptions import MlflowException

    try:
        auth.grant_user_permission(user, resource_type, resource_id, permission)
    except MlflowException as exc:  # granted before, maybe changed since: grant it again
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(user, resource_type, resource_id)
        auth.grant_user_permission(user, resource_type, resource_id, permission)


def main() -> int:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    env = os.environ
    uri = env["MLFLOW_TRACKING_URI"]
    users = [(*read_user(env["TRAINING_CREDENTIALS_DIR"]), "EDIT"), (*read_user(env["SERVING_CREDENTIALS_DIR"]), "READ")]
    # The admin signs this process's requests only (MLflow's client reads these variables).
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = read_user(
        env["ADMIN_CREDENTIALS_DIR"])
    experiment, model = env["MLFLOW_EXPERIMENT"], env["MLFLOW_REGISTERED_MODEL"]
    wait_for(uri, float(env.get("WAIT_S", "300")))
    auth, client = AuthServiceClient(uri), MlflowClient(tracking_uri=uri)
    try:
        for user, password, _ in users:
            try:
                auth.create_user(user, password)
                print(f"mlflow-users: created user {user}")
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                auth.update_user_password(user, password)  # the Secret is the truth (kept across upgrades)
                print(f"mlflow-users: user {user} exists; password set from its Secret")
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        try:
            client.get_registered_model(model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(model)
        for user, _, permission in users:
            for resource_type, resource_id in (("experiment", experiment_id), ("registered_model", model)):
                grant(auth, user, resource_type, resource_id, permission)
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [exc.error_code])[0][:300]
        print(f"mlflow-users: MLflow server {uri} refused the admin's request ({exc.error_code}: {first}); "
              "check the admin Secret and the server's auth config", file=sys.stderr)
        return 2
    for user, _, permission in users:
        print(f"mlflow-users: {user} may {permission} experiment {experiment!r} (id {experiment_id}) and model {model!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
