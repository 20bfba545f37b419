"""MLflow with authentication, for real: `mlflow server --app-name basic-auth` (as the platform chart runs it),
the chart's users script (its mlflow-users Job), and what the package does with a wrong or missing user."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from loopback.services import base_env
from tests.support import mlflow_auth
from tests.support.cli import run_cli

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


def test_the_serving_user_loads_the_champion_and_may_write_nothing(server, monkeypatch):
    """READ on the registered model and on the experiment: `models:/mnist-cnn@champion` loads (its files are the
    experiment's: READ on the model alone gets 403 on their download); every write to them is refused."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    class Echo(mlflow.pyfunc.PythonModel):  # stands in for the trainer's logged model
        def predict(self, context, model_input, params=None):
            return model_input

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    # MLflow's fluent API keeps a process-wide URI that an earlier test (or the package: serving/predict.py)
    # may have set, and which wins over MLFLOW_TRACKING_URI: this server's, for this test only
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", server.uri)
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", server.uri)
    experiment = MlflowClient(server.uri).get_experiment_by_name("mnist").experiment_id
    with mlflow.start_run(experiment_id=experiment, run_name="serving-test") as run:
        logged = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    version = mlflow.register_model(logged.model_uri, "mnist-cnn").version
    MlflowClient(server.uri).set_registered_model_alias("mnist-cnn", "champion", version)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_auth.SERVING[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_auth.SERVING[1])
    server_as_serving = MlflowClient(server.uri)
    assert server_as_serving.get_model_version_by_alias("mnist-cnn", "champion").version == version
    model = mlflow.pyfunc.load_model("models:/mnist-cnn@champion")
    assert model.metadata.model_uuid
    run_id = run.info.run_id
    for what, write in (("log a metric", lambda: server_as_serving.log_metric(run_id, "x", 1.0)),
                        ("create a run", lambda: server_as_serving.create_run(experiment)),
                        ("move the alias", lambda: server_as_serving.set_registered_model_alias("mnist-cnn", "champion", "1")),
                        ("tag the model", lambda: server_as_serving.set_registered_model_tag("mnist-cnn", "a", "b")),
                        ("add a version", lambda: server_as_serving.create_model_version("mnist-cnn", logged.model_uri,
                                                                                        run_id))):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.get_http_status_code() == 403, what


def test_the_users_script_is_idempotent_and_refuses_a_wrong_admin_password(server):
    again = mlflow_auth.run_users_script(server, USER, PASSWORD)
    assert again.returncode == 0 and "exists; password set from its Secret" in again.stdout, again.stderr
    assert f"{mlflow_auth.SERVING[0]} may READ experiment 'mnist'" in again.stdout, again.stdout
    wrong = mlflow_auth.run_users_script(server, USER, PASSWORD, admin=("admin", "not-the-password-at-all"))
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "refused the admin's request (UNAUTHENTICATED" in wrong.stderr and "Traceback" not in wrong.stderr


def credentials_home(tmp_path, user: str, password: str):
    """A HOME whose ~/.mlflow/credentials names ``user`` (as the RayJob chart mounts it from a Secret), mode 0440."""
    home = tmp_path / "home"
    (home / ".mlflow").mkdir(parents=True, exist_ok=True)
    creds = home / ".mlflow" / "credentials"
    if creds.exists():
        creds.chmod(0o600)
    creds.write_text(f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n")
    creds.chmod(0o440)
    return home


ANONYMOUS = "an anonymous request (neither MLFLOW_TRACKING_USERNAME nor ~/.mlflow/credentials names a user)"


@pytest.mark.parametrize("via, user, password, who", [
    ("env", USER, "a-wrong-password-entirely", f"user '{USER}'"),
    ("file", USER, "a-wrong-password-in-the-file", f"user '{USER}'"),
    ("env", "", "", ANONYMOUS),
])
def test_train_with_a_wrong_or_missing_user_exits_2_naming_mlflow(server, tmp_path, via, user, password, who):
    env = base_env(MLFLOW_TRACKING_URI=server.uri, HOME=str(tmp_path / "empty-home"))
    if via == "file":
        env["HOME"] = str(credentials_home(tmp_path, user, password))
    elif user:
        env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    done = run_cli("train", "--set", f"train.output_dir={tmp_path / 'out'}", env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"MLflow tracking server {server.uri} refused {who} (HTTP 401)" in done.stderr, done.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in done.stderr and "~/.mlflow/credentials" in done.stderr
    assert "Traceback" not in done.stderr
    assert password not in done.stdout + done.stderr or not password


def test_the_credentials_file_alone_signs_the_package_and_mlflow_in(server, tmp_path, monkeypatch):
    """No MLFLOW_TRACKING_* in the env, only ~/.mlflow/credentials: the package's check and MLflow's client both
    authenticate as its user; the same file with a wrong password is refused with InvalidInput (exit 2)."""
    from mlflow import MlflowClient

    from mnist_job.core.errors import InvalidInput
    from mnist_job.tracking.runs import check_tracking_server

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(credentials_home(tmp_path, USER, PASSWORD)))
    check_tracking_server(server.uri)
    assert MlflowClient(tracking_uri=server.uri).get_experiment_by_name("mnist") is not None
    monkeypatch.setenv("HOME", str(credentials_home(tmp_path, USER, "not-the-password")))
    with pytest.raises(InvalidInput, match=f"refused user '{USER}'"):
        check_tracking_server(server.uri)
