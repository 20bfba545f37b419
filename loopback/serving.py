"""`mnist-job serve` on a real Ray cluster: started as a user starts it, stopped by its process group."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopback import services


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT/
    process: services.Managed
    ray: services.RayCluster

    def request(self, path: str, body: bytes | None = None, content_type: str = "application/json",
                timeout: float = 60) -> tuple[int, dict | str]:
        """(status, parsed JSON or text) of GET (no body) or POST ``path``."""
        headers = {"Content-Type": content_type} if body is not None else {}
        request = urllib.request.Request(self.url + path.lstrip("/"), data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode(errors="replace")

    def predict(self, document) -> tuple[int, dict]:
        return self.request("predict", json.dumps(document).encode())


@contextlib.contextmanager
def serving(root: Path, tracking_uri: str, cpus: int = 2, timeout: float = 420, args: tuple[str, ...] = ()
            ) -> Iterator[Served]:
    """A one-node Ray cluster and `mnist-job serve ARGS` on it; both stopped on exit."""
    cluster = services.start_ray_cluster(root / "ray", head_cpus=cpus, worker_cpus=[])
    port = services.free_port()
    process = None
    try:
        env = services.base_env(MLFLOW_TRACKING_URI=tracking_uri, RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="disabled")
        process = services.start("mnist-serve", [str(services.VENV_BIN / "python"), "-m", "mnist_job", "serve",
                                                 "--port", str(port), "--num-cpus", "1", *args],
                                 root / "logs", env=env, cwd=services.PROJECT_DIR)
        served = Served(f"http://127.0.0.1:{port}/", process, cluster)
        services.wait_http(f"{served.url}healthz", timeout, process)
        yield served
    finally:
        if process:
            process.stop()
        cluster.stop()
