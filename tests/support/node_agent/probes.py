"""Container probes (readiness, liveness, startup) as the kubelet runs them: httpGet, tcpSocket, exec."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field


def named_port(port, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a port of container {container['name']}")


def http_get(action: dict, pod_ip: str, container: dict, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    url = f"{action.get('scheme', 'HTTP').lower()}://{host}:{named_port(action['port'], container)}" \
          f"{action.get('path', '/')}"
    headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as answer:
            return 200 <= answer.status < 400, f"HTTP probe {url}: {answer.status}"
    except urllib.error.HTTPError as exc:
        return 200 <= exc.code < 400, f"HTTP probe failed with statuscode: {exc.code}"
    except OSError as exc:
        return False, f'Get "{url}": {exc}'


def tcp_socket(action: dict, pod_ip: str, container: dict, timeout: float) -> tuple[bool, str]:
    port = named_port(action["port"], container)
    try:
        with socket.create_connection((action.get("host") or pod_ip, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp {pod_ip}:{port}: {exc}"


@dataclass
class Prober:
    """One probe of one container, with its schedule and thresholds."""

    kind: str  # readiness, liveness, startup
    spec: dict
    container: dict
    run_exec: Callable[[list[str], float], subprocess.CompletedProcess]
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None until the thresholds decide
    message: str = ""

    def __post_init__(self):
        self.next_at = self.started + int(self.spec.get("initialDelaySeconds", 0))

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def check(self, pod_ip: str) -> bool | None:
        timeout = float(self.spec.get("timeoutSeconds", 1))
        try:
            if "httpGet" in self.spec:
                ok, message = http_get(self.spec["httpGet"], pod_ip, self.container, timeout)
            elif "tcpSocket" in self.spec:
                ok, message = tcp_socket(self.spec["tcpSocket"], pod_ip, self.container, timeout)
            elif "exec" in self.spec:
                done = self.run_exec(self.spec["exec"]["command"], timeout)
                ok, message = done.returncode == 0, (done.stdout + done.stderr).strip()[-500:]
            else:
                ok, message = False, f"probe {sorted(self.spec)} is not supported by this node"
        except subprocess.TimeoutExpired:
            ok, message = False, f"command timed out after {timeout:g}s"
        except ValueError as exc:
            ok, message = False, str(exc)
        self.next_at = time.monotonic() + int(self.spec.get("periodSeconds", 10))
        self.message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.result = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold", 3)):
                self.result = False
        return self.result
