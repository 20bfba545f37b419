"""MLflow with authentication, for real: `mlflow server --app-name basic-auth` (as the platform chart runs it),
the chart's users script (its mlflow-users Job), and what the package does with a wrong or missing user."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support import mlflow_auth
from tests.support.cli import run_cli
from tests.support.services import base_env

pytestmark = pytest.mark.slow

USER, PASSWORD = "mnist-training", "training-password-for-tests-9c2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-auth")
    server = mlflow_auth.start_auth_mlflow(root / "logs", root / "store")
    try:
        done = mlflow_auth.run_users_script(server, USER, PASSWORD)
        assert done.returncode == 0, done.stdout + done.stderr
        yield server
    finally:
        server.stop()


def status(url: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_anonymous_requests_get_401_and_only_health_is_open(server):
    assert status(f"{server.uri}/health")[0] == 200
    for path in ("/api/2.0/mlflow/experiments/search?max_results=5", "/api/2.0/mlflow/registered-models/search",
                 "/api/2.0/mlflow/users/get?username=admin", "/"):
        code, body = status(f"{server.uri}{path}")
        assert code == 401, (path, code, body[:200])


def test_only_the_configured_origin_may_change_things_from_a_browser(server):
    create = f"{server.uri}/api/2.0/mlflow/runs/create"
    body = b'{"experiment_id": "0"}'
    code, text = status(create, {"Origin": "http://evil.example", "Content-Type": "application/json"}, body)
    assert code == 403 and "Cross-origin request blocked" in text, (code, text[:200])
    code, text = status(create, {"Origin": mlflow_auth.CORS_ORIGIN, "Content-Type": "application/json"}, body)
    assert code == 401, (code, text[:200])  # an allowed origin goes on to authentication


def test_the_training_user_logs_a_run_in_its_experiment_and_nothing_else(server):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    trainer = MlflowClient(tracking_uri=mlflow_auth.uri_as(server, USER, PASSWORD))
    admin = MlflowClient(tracking_uri=mlflow_auth.uri_as(server, *mlflow_auth.ADMIN))
    experiment = trainer.get_experiment_by_name("mnist")
    run = trainer.create_run(experiment.experiment_id, run_name="auth-test")
    trainer.log_metric(run.info.run_id, "val_accuracy", 0.5, step=1)
    trainer.set_terminated(run.info.run_id)
    assert admin.get_run(run.info.run_id).data.metrics["val_accuracy"] == 0.5
    trainer.set_registered_model_tag("mnist-cnn", "touched-by", USER)  # EDIT on its model

    other = admin.create_experiment("someone-elses")
    with pytest.raises(MlflowException) as refused:
        trainer.create_run(other)
    assert refused.value.get_http_status_code() == 403
    with pytest.raises(MlflowException) as refused:  # NO_PERMISSIONS by default: not even reading
        trainer.get_experiment(other)
    assert refused.value.get_http_status_code() == 403


def test_the_users_script_is_idempotent_and_refuses_a_wrong_admin_password(server):
    again = mlflow_auth.run_users_script(server, USER, PASSWORD)
    assert again.returncode == 0 and "exists; password set from its Secret" in again.stdout, again.stderr
    wrong = mlflow_auth.run_users_script(server, USER, PASSWORD, admin=("admin", "not-the-password-at-all"))
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "refused the admin's request (UNAUTHENTICATED" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize("user, password, who", [
    (USER, "a-wrong-password-entirely", f"user '{USER}'"),
    ("", "", "an anonymous request (MLFLOW_TRACKING_USERNAME is not set)"),
])
def test_train_with_a_wrong_or_missing_user_exits_2_naming_mlflow(server, tmp_path, user, password, who):
    env = base_env(MLFLOW_TRACKING_URI=server.uri)
    if user:
        env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    done = run_cli("train", "--set", f"train.output_dir={tmp_path / 'out'}", env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"MLflow tracking server {server.uri} refused {who} (HTTP 401)" in done.stderr, done.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in done.stderr and "Traceback" not in done.stderr
    assert password not in done.stdout + done.stderr or not password
