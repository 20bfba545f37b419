"""A stand-in Kubernetes API server (plain HTTP on 127.0.0.1) that answers what `helm template --dry-run=server`
asks: the version, API discovery for the kinds the charts render, and GETs of the objects given. It lets the
tests run the charts' `lookup` paths (generated dev password, kept on upgrade, refused development credentials),
which `helm template` alone never takes; these machines can run no real API server.

Objects are keyed by their API path below /api/v1 or /apis/<group>/<version>, e.g.
"namespaces/mnist/secrets/x"; a key mapped to None answers 403 Forbidden (a user without that permission).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# groupVersion -> (resource, kind, namespaced) for what the two charts render, and Namespace.
DISCOVERY = {
    "v1": [("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("namespaces", "Namespace", False),
           ("services", "Service", True), ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "ray.io/v1": [("rayjobs", "RayJob", True)],
}


def namespace(name: str) -> tuple[str, dict]:
    return f"namespaces/{name}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def secret(ns: str, name: str, data: dict[str, str], annotations: dict[str, str] | None = None,
           release: str | None = None) -> tuple[str, dict]:
    """A Secret; with ``release``, owned by that Helm release (what an upgrade finds: helm adopts nothing else)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    meta = {"name": name, "namespace": ns, "annotations": dict(annotations or {}), "labels": {}}
    if release:
        meta["labels"]["app.kubernetes.io/managed-by"] = "Helm"
        meta["annotations"].update({"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns})
    return f"namespaces/{ns}/secrets/{name}", {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": encoded,
                                               "metadata": meta}


def configmap(ns: str, name: str) -> tuple[str, dict]:
    return f"namespaces/{ns}/configmaps/{name}", {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": name, "namespace": ns}, "data": {}}


class FakeKubeAPI:
    def __init__(self, objects: dict[str, dict | None]):
        self.objects = objects
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                api.requests.append(path)
                self._send(*api.answer(path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str) -> tuple[int, dict]:
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = [{"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                       "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in DISCOVERY if "/" in gv]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for prefix in ("/api/", "/apis/"):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            for gv, resources in DISCOVERY.items():
                if rest == gv:
                    return 200, {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                        {"name": r, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["get", "list"]}
                        for r, k, ns in resources]}
                if rest.startswith(gv + "/"):
                    key = rest[len(gv) + 1:]
                    if key in self.objects and self.objects[key] is None:
                        return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                                     "code": 403, "message": f"forbidden: {key}"}
                    if key in self.objects:
                        return 200, self.objects[key]
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f"{path} not found"}

    def kubeconfig(self, folder: Path) -> Path:
        host, port = self.server.server_address[:2]
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    def __enter__(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
