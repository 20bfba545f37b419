"""Env resolution: a container's env exactly as the kubelet computes it, and what KubeRay 1.7 adds.

Also the two local rewrites every value goes through: Service DNS names -> the loopback address of
the local stand-in, and paths this host does not have (/app, /data-cache, ...) -> the pod's folder
under the common mount point (see sandbox.py). Both are recorded as substitutions.
"""

from __future__ import annotations

import ast
import difflib
import urllib.parse
from pathlib import Path

from tests.support.kuberay.rendering import NAMESPACE, ROOT, VENV_BIN, ContractError, PlatformView, Substitutions

CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN"}

class ServiceMap:
    """Cluster DNS names of Services -> the loopback address of the local stand-in."""

    def __init__(self, subs: Substitutions):
        self.subs = subs
        self.table: dict[tuple[str, int], str] = {}
        self.hosts: dict[str, str] = {}

    def add(self, service: str, port: int, local: str, namespace: str = NAMESPACE) -> None:
        for host in (service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                     f"{service}.{namespace}.svc.cluster.local"):
            self.table[(host, port)] = local
            self.hosts[host] = local.rpartition(":")[0]
        self.subs.add("service DNS", f"{service}:{port}", local, "no cluster DNS; the stand-in listens on loopback")

    def scratch(self) -> ServiceMap:
        """A copy whose additions are neither seen by this map nor recorded in its substitutions."""
        other = ServiceMap(Substitutions())
        other.table, other.hosts = dict(self.table), dict(self.hosts)
        return other

    def address(self, value: str) -> str:
        """``host:port`` -> the local ``127.0.0.1:port`` (unchanged when the host is no known Service)."""
        host, _, port = value.rpartition(":")
        return self.table.get((host, int(port)), value) if port.isdigit() else value

    def url(self, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return value
        port = parts.port or (443 if parts.scheme == "https" else 80)
        local = self.table.get((parts.hostname, port))
        if local is None:
            if "." not in parts.hostname or parts.hostname.endswith(".svc.cluster.local"):
                raise ContractError(f"[chart] {value} names a Service the platform chart does not define")
            return value
        return urllib.parse.urlunsplit(parts._replace(netloc=local))


def resolve_env(container: dict, platform: PlatformView, where: str, extra: list[dict] = ()) -> dict[str, str]:
    """The container's env as the kubelet computes it: envFrom first, then env in order (later wins).

    ``extra`` are env entries appended after the container's own (what KubeRay appends).
    """
    out: dict[str, str] = {}
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "ConfigMap"
            data = platform.configmap(ref["name"])
        else:
            ref, kind = source["secretRef"], "Secret"
            data = platform.secret(ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ContractError(f"[RayJob chart vs platform chart] {where}: envFrom {kind} {ref['name']!r} is not "
                                f"rendered by the platform chart")
        out.update({prefix + k: v for k, v in data.items()})
    for item in [*(container.get("env", []) or []), *extra]:
        name = item["name"]
        if "value" in item:
            out[name] = str(item["value"])
            continue
        source = item.get("valueFrom", {})
        for kind, ref_key, getter in (("ConfigMap", "configMapKeyRef", platform.configmap),
                                      ("Secret", "secretKeyRef", platform.secret)):
            if ref_key in source:
                ref = source[ref_key]
                data = getter(ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    what = f"{kind} {ref['name']!r}" if data is None else f"key {ref['key']!r} of {kind} {ref['name']!r}"
                    hint = ""
                    if data is not None:
                        close = difflib.get_close_matches(ref["key"], list(data), n=1)
                        hint = f" (it has {close[0]!r}: renamed on one side?)" if close else f" (it has {sorted(data)})"
                    raise ContractError(f"[RayJob chart vs platform chart] {where}: env {name} refers to {what}, "
                                        f"which the platform chart does not define{hint}")
                out[name] = data[ref["key"]]
                break
        else:
            if source:
                raise ContractError(f"[harness] {where}: env {name}: valueFrom {sorted(source)} is not supported here")
    return out


def package_env_names() -> set[str]:
    """The env var names mnist_job's config module reads (``get("NAME")`` in Runtime.from_env)."""
    tree = ast.parse((ROOT / "mnist_job" / "core" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


# ------------------------------------------------------------------ what the image and the kubelet give every container


def container_base_env(image_env: dict[str, str], pod_name: str, platform: PlatformView,
                       svc: ServiceMap) -> dict[str, str]:
    """Before the container's own env: the image's ENV and PATH, HOSTNAME, the kubelet's service links.

    PATH: the venv's Python stands for the image's (same pinned package). Service links: for every
    Service of the namespace with a cluster IP (KubeRay's head Service is headless: none), and the API
    server's ``kubernetes`` Service; here at 127.0.0.1 and the stand-in's port (nothing answers for the
    API server).
    """
    env = {**image_env, "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOSTNAME": pod_name}
    linked = [("kubernetes", [{"name": "https", "port": 443, "protocol": "TCP"}])]
    linked += [(d["metadata"]["name"], d["spec"]["ports"]) for d in platform.docs
               if d.get("kind") == "Service" and d["spec"].get("clusterIP") != "None"]
    for name, ports in linked:
        prefix = name.upper().replace("-", "_")
        local = [(p, int(svc.address(f"{name}:{p['port']}").rpartition(":")[2])) for p in ports]
        env[f"{prefix}_SERVICE_HOST"] = "127.0.0.1"
        env[f"{prefix}_SERVICE_PORT"] = str(local[0][1])
        env[f"{prefix}_PORT"] = f"{local[0][0].get('protocol', 'TCP').lower()}://127.0.0.1:{local[0][1]}"
        for port, number in local:
            proto = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
            link = f"{prefix}_PORT_{port['port']}_{proto}"
            env.update({link: f"{proto.lower()}://127.0.0.1:{number}", f"{link}_PROTO": proto.lower(),
                        f"{link}_PORT": str(number), f"{link}_ADDR": "127.0.0.1"})
    svc.subs.add("service links (<SERVICE>_SERVICE_HOST, ...)", "cluster IPs and Service ports",
                 "127.0.0.1 and the stand-ins' ports", "no cluster IPs here")
    return env


# ------------------------------------------------------------------ paths this host does not have


def missing_prefixes(paths) -> list[str]:
    """The top-level folders among ``paths`` that this host does not have (they get rewritten)."""
    tops = {"/" + p.strip("/").split("/", 1)[0] for p in paths}
    return sorted(t for t in tops if t != "/" and not Path(t).exists())


def rewrite_pod_path(value: str, prefixes: list[str], root: str) -> str:
    """``/X/...`` -> ``root/X/...`` when /X is one of ``prefixes``; else unchanged."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
            return root + value
    return value


def rewrite_token(token: str, prefixes: list[str], root: str) -> str:
    """A command-line word: a path, or key=path (as in --set train.output_dir=/tmp/outputs)."""
    if token.startswith("/"):
        return rewrite_pod_path(token, prefixes, root)
    if "=" in token:
        key, value = token.split("=", 1)
        if value.startswith("/"):
            return f"{key}={rewrite_pod_path(value, prefixes, root)}"
    return token


def local_env(env: dict[str, str], where: str, svc: ServiceMap, prefixes: list[str], mount: str,
              subs: Substitutions) -> dict[str, str]:
    """Every value through the Service and path rewrites (each change recorded, credentials not shown)."""
    out = {}
    for name, value in env.items():
        local = svc.url(value)
        if name == "RAY_ADDRESS":
            local = svc.address(local)
        elif name in ("FQ_RAY_IP", "RAY_IP"):
            local = svc.hosts.get(local, local)
        local = rewrite_pod_path(local, prefixes, mount)
        if local != value and name not in CREDENTIAL_VARS:
            subs.add(f"{where} env {name}", value, local, "service DNS / path this host does not have")
        out[name] = local
    return out
