"""The Kubernetes API as `mnist-job submit` uses it: the kubeconfig's cluster, server-side apply, and a
``Snapshot`` of a RayJob with what it made (its RayCluster's pods, its submitter Job and pods, their events).

The `kubernetes` client, no kubectl. An API server that cannot be reached is ``ServiceUnavailable`` (exit 3)
naming it; a manifest the API server refuses is ``InvalidInput`` (exit 2) with its message.
"""

from __future__ import annotations

import json
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from mnist_job.cluster.outcome import Snapshot
from mnist_job.core.errors import InvalidInput, ServiceUnavailable

FIELD_MANAGER = "mnist-job"
RAYJOB = {"group": "ray.io", "version": "v1", "plural": "rayjobs"}


class Cluster:
    """The cluster of the current kubeconfig context (KUBECONFIG, else ~/.kube/config), or with ``in_cluster``
    (Runtime.kube_in_cluster: in a pod, no KUBECONFIG) the pod's own, through its service account."""

    def __init__(self, context: str | None = None, in_cluster: bool = False):
        try:
            if in_cluster:
                config.load_incluster_config()
                self.default_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
            else:
                config.load_kube_config(context=context)
                _, active = config.list_kube_config_contexts()
                self.default_namespace = active.get("context", {}).get("namespace", "default")
        except (config.ConfigException, OSError) as exc:
            raise InvalidInput(f"KUBECONFIG: no usable cluster configuration ({exc})") from None
        self.api = client.ApiClient()
        self.server = self.api.configuration.host
        self.core, self.batch, self.custom = client.CoreV1Api(self.api), client.BatchV1Api(self.api), \
            client.CustomObjectsApi(self.api)

    def call(self, what: str, function, *args, **kwargs):
        """``function(*args, **kwargs)`` against the API server: unreachable -> exit 3 naming the server; not
        allowed -> exit 2 with the API server's words; other refusals (404, 409, 422) raise ApiException."""
        try:
            return function(*args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"Kubernetes API server {self.server} is unreachable ({what}): "
                                     f"{type(exc).__name__}") from None
        except ApiException as exc:
            if exc.status in (401, 403):
                raise InvalidInput(f"{what}: the API server {self.server} refused: {api_message(exc)}") from None
            raise

    def apply(self, documents: list[dict], namespace: str) -> list[str]:
        """Server-side apply of every document (its own namespace, else ``namespace``); their kind/name."""
        dyn = self.call("discovery", dynamic.DynamicClient, self.api)
        applied = []
        for doc in documents:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            try:
                resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                self.call(f"apply {doc['kind']}", resource.server_side_apply, body=doc,
                          name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"],
                          field_manager=FIELD_MANAGER, force_conflicts=True)
            except ApiException as exc:
                raise InvalidInput(f"{doc['kind']} {doc['metadata'].get('name')}: the API server refused it: "
                                   f"{api_message(exc)}") from None
            except dynamic.exceptions.ResourceNotFoundError:
                raise InvalidInput(f"{doc['kind']} ({doc['apiVersion']}): the cluster does not know this kind "
                                   "(is the KubeRay operator installed?)") from None
            applied.append(f"{doc['kind'].lower()}/{doc['metadata']['name']}")
        return applied

    def rayjob(self, name: str, namespace: str) -> dict | None:
        try:
            return self.call("read RayJob", self.custom.get_namespaced_custom_object, **RAYJOB,
                             namespace=namespace, name=name, _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_rayjob(self, name: str, namespace: str) -> None:
        self.call("delete RayJob", self.custom.delete_namespaced_custom_object, **RAYJOB, namespace=namespace,
                  name=name, _request_timeout=30)

    def snapshot(self, rayjob: dict, log_lines: int = 60) -> Snapshot:
        """The RayJob with its submitter Job, the pods of both and their events, and the driver's last lines."""
        namespace, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
        cluster_name = (rayjob.get("status") or {}).get("rayClusterName")
        pods = []
        if cluster_name:
            pods += self._items(self.core.list_namespaced_pod, namespace, f"ray.io/cluster={cluster_name}")
        submitters = self.submitter_pods(name, namespace)
        try:
            job = self.call("read Job", self.batch.read_namespaced_job, name, namespace, _request_timeout=30)
            job = self.api.sanitize_for_serialization(job)
        except ApiException:
            job = None
        names = {name, cluster_name, *(p["metadata"]["name"] for p in pods + submitters)}
        events = [e for e in self._items(self.core.list_namespaced_event, namespace)
                  if (e.get("involvedObject") or {}).get("name") in names]
        tail = self.log_tail(submitters[-1], log_lines) if submitters and log_lines else ""
        return Snapshot(rayjob, job, pods + submitters, events, tail)

    def submitter_pods(self, name: str, namespace: str) -> list[dict]:
        """The submitter Job's pods, oldest first (one per attempt)."""
        pods = self._items(self.core.list_namespaced_pod, namespace, f"batch.kubernetes.io/job-name={name}")
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def log_tail(self, pod: dict, lines: int) -> str:
        try:
            return self.call("read logs", self.core.read_namespaced_pod_log, pod["metadata"]["name"],
                             pod["metadata"]["namespace"], tail_lines=lines, _request_timeout=30)
        except ApiException:
            return ""  # not started yet, or gone

    def follow_logs(self, pod: dict):
        """The pod's log lines as it writes them, until its container ends."""
        response = self.core.read_namespaced_pod_log(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                                     follow=True, _preload_content=False)
        pending = b""
        for chunk in response.stream():  # chunks as they arrive, not lines
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
        if pending:
            yield pending

    def _items(self, function, namespace: str, selector: str = "") -> list[dict]:
        listed = self.call("list", function, namespace, label_selector=selector, _preload_content=False,
                           _request_timeout=30)
        return json.loads(listed.data)["items"]


def api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError):
        return str(exc.reason)


def read_manifest(path: Path) -> list[dict]:
    """The documents of a manifest file (exit 2 when unreadable or without exactly one RayJob)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"-f: cannot read {path}: {exc}") from None
    if not all(isinstance(d, dict) and d.get("kind") and d.get("apiVersion") for d in documents):
        raise InvalidInput(f"-f: {path}: every document needs apiVersion and kind")
    rayjobs = [d for d in documents if d["kind"] == "RayJob"]
    if len(rayjobs) != 1:
        raise InvalidInput(f"-f: {path}: expected one RayJob, found {len(rayjobs)}")
    return documents
