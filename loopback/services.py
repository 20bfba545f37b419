"""Real services for tests: S3 (moto_server), an MLflow server, a multi-node Ray cluster.

Every process is started in its own process group and stopped by that PID (SIGTERM, then SIGKILL
after a timeout): never by name, so nothing else on the machine is touched. Logs go to files whose
paths are printed on failure. All of it binds 127.0.0.1; the test runner puts the suite in a
network namespace with only loopback (scripts/in-netns.sh).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loopback.polling import wait_until
from loopback.project_env import PROJECT_ENV

VENV_BIN = Path(sys.executable).parent
PROJECT_DIR = Path(__file__).resolve().parents[1]

TEST_ACCESS_KEY = "testkey-AKIAMNISTEXAMPLE"
TEST_SECRET_KEY = "testsecret-do-not-leak-8d1f3c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "MNIST_", "RAY_ADDRESS"))}
    env.update(PROJECT_ENV)  # telemetry off, as for make and the scripts
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Managed:
    """A process we started, in its own process group; stop() ends the whole group."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=timeout)
                # the leader is gone; make sure its group is too
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Managed:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    handle = log.open("ab")
    popen = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env or base_env(),
                             cwd=cwd, start_new_session=True)
    handle.close()
    return Managed(name, popen, log)


def wait_http(url: str, timeout: float, process: Managed | None = None, headers: dict | None = None) -> None:
    """Until ``url`` answers with a status below 500; fails early when ``process`` exits."""
    last = {"error": ""}

    def answers() -> bool:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited early; log {process.log}:\n{process.tail()}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=3) as response:
                return response.status < 500
        except Exception as exc:  # noqa: BLE001
            last["error"] = str(exc)
            return False

    wait_until(answers, timeout, lambda: f"{url} did not answer within {timeout} s ({last['error']})", interval=0.3)


# ------------------------------------------------------------------ S3


@dataclass
class S3Server:
    process: Managed
    endpoint: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=TEST_ACCESS_KEY,
                            aws_secret_access_key=TEST_SECRET_KEY, region_name="us-east-1")

    def create_buckets(self, *names: str) -> None:
        client = self.client()
        for name in names:
            client.create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}


def start_s3(log_dir: Path, port: int | None = None) -> S3Server:
    port = port or free_port()
    process = start("moto-s3", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_dir)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint, 60, process)
    return S3Server(process, endpoint)


# ------------------------------------------------------------------ MLflow


@dataclass
class MlflowServer:
    process: Managed | None
    uri: str
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None

    def restart(self) -> None:
        """Start again with the same arguments and store (after stop())."""
        self.process = start("mlflow-server", self.args, self.log_dir, env=self.env)
        wait_http(f"{self.uri}/health", 90, self.process)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def mlflow_server_args(store: Path, artifacts_destination: str, port: int, allowed_hosts: str | None = None) -> list[str]:
    args = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
            "--artifacts-destination", artifacts_destination, "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if allowed_hosts:
        args += ["--allowed-hosts", allowed_hosts]
    return args


def start_mlflow(log_dir: Path, store_dir: Path, s3: S3Server | None = None, bucket: str = "mlflow-artifacts",
                 args: list[str] | None = None, port: int | None = None, env: dict | None = None) -> MlflowServer:
    """A real `mlflow server` with proxied artifacts (to S3 when ``s3`` is given); ``env``: added to its env."""
    port = port or free_port()
    store_dir.mkdir(parents=True, exist_ok=True)
    destination = f"s3://{bucket}" if s3 else (store_dir / "artifacts").as_uri()
    args = args or mlflow_server_args(store_dir / "mlflow.db", destination, port)
    env = base_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **(env or {}))
    if s3:
        env.update(s3.env(), MLFLOW_S3_ENDPOINT_URL=s3.endpoint)
    server = MlflowServer(None, f"http://127.0.0.1:{port}", port, args, env, log_dir)
    server.restart()
    return server


# ------------------------------------------------------------------ Ray


@dataclass
class RayCluster:
    head: Managed
    workers: list[Managed]
    address: str  # GCS address for `ray start --address` / ray.init
    dashboard: str  # http://127.0.0.1:PORT (Jobs API)
    temp_root: Path

    def processes(self) -> list[Managed]:
        return [self.head, *self.workers]

    def stop(self) -> None:
        for process in reversed(self.processes()):
            process.stop()


def start_ray_cluster(root: Path, head_cpus: int, worker_cpus: list[int], env: dict[str, str] | None = None,
                      worker_env: list[dict[str, str]] | None = None, head_args: list[str] | None = None) -> RayCluster:
    """`ray start --head` plus one `ray start --address` per worker node, each with its own temp dir.

    Ray processes stay in the foreground (--block) so each node is one process group we own.
    Token auth is disabled: everything is on loopback inside the test's network namespace.
    """
    env = base_env(RAY_AUTH_MODE="disabled", **(env or {}))
    gcs_port, dashboard_port = free_port(), free_port()
    # Ray's unix sockets live under --temp-dir and must stay under 107 bytes: short folders in /tmp.
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    log_dir = root / "logs"
    head = start("ray-head", [
        str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}", f"--num-cpus={head_cpus}", "--num-gpus=0", "--include-dashboard=true",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", f"--temp-dir={short / 'head'}",
        "--disable-usage-stats", *(head_args or []),
    ], log_dir, env=env)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    wait_http(f"{dashboard}/api/version", 120, head)
    address = f"127.0.0.1:{gcs_port}"

    def start_worker(i: int) -> Managed:
        node_env = {**env, **((worker_env or [{}] * len(worker_cpus))[i])}
        return start(f"ray-worker-{i}", [
            str(VENV_BIN / "ray"), "start", "--block", f"--address={address}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={worker_cpus[i]}", "--num-gpus=0", f"--temp-dir={short / f'w{i}'}", "--disable-usage-stats",
        ], log_dir, env=node_env)

    cluster = RayCluster(head, [start_worker(i) for i in range(len(worker_cpus))], address, dashboard, short)
    wait_nodes(cluster, 1 + len(worker_cpus), 120, restart_worker=start_worker)
    return cluster


# `ray start` gives its raylet 30 s to register with the GCS (ray/_private/node.py, not configurable) and exits
# when a loaded machine takes longer; a pod's container would be restarted, so is such a worker, once.
RAYLET_TIMED_OUT = "The current node timed out during startup"


def wait_nodes(cluster: RayCluster, count: int, timeout: float, headers: dict[str, str] | None = None,
               restart_worker: Callable[[int], Managed] | None = None) -> None:
    """Until the dashboard counts ``count`` live raylets; fails early when one of the cluster's processes exits
    (``restart_worker(i)`` starts worker i again once, after its raylet timed out registering)."""
    alive = {"count": 0}
    restarted: set[int] = set()

    def all_up() -> bool:
        for i, process in enumerate(cluster.workers):
            if restart_worker and i not in restarted and not process.alive() and RAYLET_TIMED_OUT in process.tail():
                restarted.add(i)
                cluster.workers[i] = restart_worker(i)
        for process in cluster.processes():
            if not process.alive():
                raise RuntimeError(f"{process.name} exited; log {process.log}:\n{process.tail()}")
        try:
            request = urllib.request.Request(f"{cluster.dashboard}/nodes?view=summary", headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as response:
                summary = json.load(response)["data"]["summary"]
            alive["count"] = sum(1 for n in summary if n.get("raylet", {}).get("state") == "ALIVE")
        except Exception:  # noqa: BLE001
            return False
        return alive["count"] >= count

    wait_until(all_up, timeout, lambda: f"only {alive['count']} of {count} Ray nodes came up within {timeout} s",
               interval=1)
