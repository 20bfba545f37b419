"""A real `mlflow server --app-name basic-auth` (MLflow's own auth app, as the platform chart runs it), and
the chart's users script run against it.

The server is services.start_mlflow with the auth app's flag and config: an auth store next to the
tracking store, an admin created from MLFLOW_AUTH_ADMIN_* on first start, explicit CORS origins.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path

from tests.support import services

ADMIN = ("admin", "admin-password-for-tests-4e1b")
CORS_ORIGIN = "http://localhost:5000"
USERS_SCRIPT = services.PROJECT_DIR / "charts" / "kuberay-mnist-platform" / "files" / "mlflow_users.py"


def start_auth_mlflow(log_dir: Path, store_dir: Path, default_permission: str = "NO_PERMISSIONS") -> services.MlflowServer:
    store_dir.mkdir(parents=True, exist_ok=True)
    config = store_dir / "basic_auth.ini"
    config.write_text("[mlflow]\n"
                      f"default_permission = {default_permission}\n"
                      f"database_uri = sqlite:///{store_dir / 'basic_auth.db'}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = services.free_port()
    args = [*services.mlflow_server_args(store_dir / "mlflow.db", (store_dir / "artifacts").as_uri(), port),
            "--app-name", "basic-auth", "--cors-allowed-origins", CORS_ORIGIN]
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-for-tests"}
    return services.start_mlflow(log_dir, store_dir, args=args, port=port, env=env)


def uri_as(server: services.MlflowServer, user: str, password: str) -> str:
    """The server's URI with a user in it (the requests library under MLflow's client sends it)."""
    return server.uri.replace("://", f"://{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@", 1)


def run_users_script(server: services.MlflowServer, user: str, password: str, experiment: str = "mnist",
                     model: str = "mnist-cnn", admin: tuple[str, str] = ADMIN) -> subprocess.CompletedProcess:
    """The platform chart's files/mlflow_users.py, as its Job runs it (the admin's credentials in its env)."""
    env = services.base_env(MLFLOW_TRACKING_URI=server.uri, MLFLOW_TRACKING_USERNAME=admin[0],
                            MLFLOW_TRACKING_PASSWORD=admin[1], TRAINING_USERNAME=user, TRAINING_PASSWORD=password,
                            MLFLOW_EXPERIMENT=experiment, MLFLOW_REGISTERED_MODEL=model, WAIT_S="30")
    return subprocess.run([sys.executable, str(USERS_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
