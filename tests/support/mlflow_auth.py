"""A real `mlflow server --app-name basic-auth` (MLflow's own auth app, as the platform chart runs it), and
the chart's users script run against it.

The server is services.start_mlflow with the auth app's flag and config: an auth store next to the
tracking store, an admin created from the config file's admin_username/admin_password on first start (the
chart's admin Secret holds that file), explicit CORS origins.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from loopback import services

ADMIN = ("admin", "admin-password-for-tests-4e1b")
SERVING = ("mnist-serving", "serving-password-for-tests-7d0")
CORS_ORIGIN = "http://localhost:5000"
USERS_SCRIPT = services.PROJECT_DIR / "charts" / "kuberay-mnist-platform" / "files" / "mlflow_users.py"


def start_auth_mlflow(log_dir: Path, store_dir: Path, default_permission: str = "NO_PERMISSIONS") -> services.MlflowServer:
    store_dir.mkdir(parents=True, exist_ok=True)
    config = store_dir / "basic_auth.ini"
    config.write_text("[mlflow]\n"
                      f"default_permission = {default_permission}\n"
                      f"database_uri = sqlite:///{store_dir / 'basic_auth.db'}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n")
    port = services.free_port()
    args = [*services.mlflow_server_args(store_dir / "mlflow.db", (store_dir / "artifacts").as_uri(), port),
            "--app-name", "basic-auth", "--cors-allowed-origins", CORS_ORIGIN]
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-for-tests"}
    return services.start_mlflow(log_dir, store_dir, args=args, port=port, env=env)


def uri_as(server: services.MlflowServer, user: str, password: str) -> str:
    """The server's URI with a user in it (the requests library under MLflow's client sends it)."""
    return server.uri.replace("://", f"://{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@", 1)


def run_users_script(server: services.MlflowServer, user: str, password: str, experiment: str = "mnist",
                     model: str = "mnist-cnn", admin: tuple[str, str] = ADMIN,
                     serving: tuple[str, str] = SERVING) -> subprocess.CompletedProcess:
    """The platform chart's files/mlflow_users.py, as its Job runs it: each user's name and password as files of
    a folder (the Job's Secret volumes), none in its env."""
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for role, (name, secret) in (("admin", admin), ("training", (user, password)), ("serving", serving)):
            folder = Path(tmp) / role
            folder.mkdir(mode=0o700)
            (folder / "username").write_text(name)
            (folder / "password").write_text(secret)
            dirs[f"{role.upper()}_CREDENTIALS_DIR"] = str(folder)
        env = services.base_env(MLFLOW_TRACKING_URI=server.uri, MLFLOW_EXPERIMENT=experiment,
                                MLFLOW_REGISTERED_MODEL=model, WAIT_S="30", **dirs)
        return subprocess.run([sys.executable, str(USERS_SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=120)
