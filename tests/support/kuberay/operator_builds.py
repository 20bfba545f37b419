"""What the KubeRay v1.7.0 operator builds, reproduced: commands, containers and env it adds to the pods.

The harness runs these as KubeRay would (pods.py, submitter.py); only addresses and ports are then
made local, each recorded as a substitution.
"""

from __future__ import annotations

import copy
import json
import math
import secrets

from tests.support.kuberay.rendering import NAMESPACE
from tests.support.kuberay.sandbox import quantity

# KubeRay v1.7.0 defaults: its version, the head group label, the head ports
KUBERAY_VERSION = "v1.7.0"
HEAD_GROUP_LABEL = "headgroup"
DEFAULT_GCS_PORT, DEFAULT_DASHBOARD_PORT, DEFAULT_CLIENT_PORT = 6379, 8265, 10001
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"
# What KubeRay's injected wait-gcs-ready init container does on worker pods (v1.7.0,
# DefaultWorkerPodTemplate): `ray health-check` against the head Service every 5 s until it answers.
WAIT_GCS_READY = """until ray health-check --address {address} >/dev/null 2>&1; do
  echo "GCS at {address}: not ready after $SECONDS s"; sleep 5
done
echo "GCS at {address}: ready"
"""
BOOLEAN_VALUED = ("log-color", "include-dashboard", "include-log-monitor")  # KubeRay keeps =true/false for these


def kube_suffix() -> str:
    """What apimachinery's rand.String(5) gives (KubeRay's cluster, pod and submission id suffixes)."""
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def kuberay_node_env(role: str, group: str, cluster: str, pod_name: str, ray_start_cmd: str,
                     token_secret: str | None) -> list[dict]:
    """The env entries KubeRay v1.7.0 appends to a Ray container (setContainerEnvVars, SetContainerTokenAuthEnvVars).

    Field references (metadata.labels['ray.io/cluster'], metadata.namespace, metadata.name,
    metadata.labels['ray.io/group']) are resolved to what the pod's metadata would hold.
    """
    head_service = f"{cluster}-head-svc.{NAMESPACE}.svc.cluster.local"
    entries = []
    if role == "worker":
        entries += [{"name": "FQ_RAY_IP", "value": head_service}, {"name": "RAY_IP", "value": head_service.split(".")[0]}]
    host = head_service if role == "worker" else "127.0.0.1"
    entries += [
        {"name": "RAY_CLUSTER_NAME", "value": cluster},
        {"name": "RAY_CLUSTER_NAMESPACE", "value": NAMESPACE},
        {"name": "RAY_CLOUD_INSTANCE_ID", "value": pod_name},
        {"name": "RAY_NODE_TYPE_NAME", "value": HEAD_GROUP_LABEL if role == "head" else group},
        {"name": "KUBERAY_GEN_RAY_START_CMD", "value": ray_start_cmd},
        {"name": "RAY_PORT", "value": str(DEFAULT_GCS_PORT)},
        {"name": "RAY_ADDRESS", "value": f"{host}:{DEFAULT_GCS_PORT}"},
        {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"},
    ]
    if role == "head":
        entries.append({"name": "RAY_USAGE_STATS_EXTRA_TAGS", "value": f"kuberay_version={KUBERAY_VERSION};kuberay_crd=RayJob"})
    entries.append({"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"})
    return entries + token_env(token_secret)


def token_env(token_secret: str | None) -> list[dict]:
    """RAY_AUTH_MODE / RAY_AUTH_TOKEN as KubeRay sets them when authOptions.mode is token."""
    if token_secret is None:
        return []
    return [{"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "auth_token"}}}]


def ray_start_params(role: str, spec: dict, container: dict, head_address: str) -> dict[str, str]:
    """rayStartParams as KubeRay completes them (setMissingRayStartParams + generateRayStartCommand)."""
    params = {k: str(v) for k, v in (spec.get("rayStartParams") or {}).items()}
    if role == "worker":
        params.setdefault("address", head_address)
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", "8080")
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", "52365")
    resources = container.get("resources") or {}
    cpu = resources.get("limits", {}).get("cpu") or resources.get("requests", {}).get("cpu")
    if "num-cpus" not in params and cpu:
        params["num-cpus"] = str(math.ceil(quantity(cpu)))
    if "memory" not in params and "memory" in resources.get("limits", {}):
        params["memory"] = str(int(quantity(resources["limits"]["memory"])))
    if "num-gpus" not in params and "nvidia.com/gpu" in resources.get("limits", {}):
        params["num-gpus"] = str(resources["limits"]["nvidia.com/gpu"])
    return params


def ray_start_command(role: str, params: dict[str, str]) -> str:
    flags = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in BOOLEAN_VALUED:
            flags += f" --{key} " if value.lower() == "true" else ""
        else:
            flags += f" --{key}={value} "
    return ("ray start --head" if role == "head" else "ray start") + flags


def init_containers(role: str, pod_spec: dict, container: dict, head_fqdn: str) -> list[dict]:
    """The pod's initContainers, then on workers the wait-gcs-ready container KubeRay appends (its env and
    volumeMounts copied from the Ray container, its securityContext too)."""
    out = [copy.deepcopy(c) for c in pod_spec.get("initContainers", []) or []]
    if role == "worker":
        out.append({"name": "wait-gcs-ready", "command": ["/bin/bash", "-c", "--"],
                    "args": [WAIT_GCS_READY.format(address=f"{head_fqdn}:{DEFAULT_GCS_PORT}")],
                    "securityContext": copy.deepcopy(container.get("securityContext")),
                    "env": copy.deepcopy(container.get("env", [])),
                    "volumeMounts": copy.deepcopy(container.get("volumeMounts", []))})
    return out


HEALTH = ("python -c \"import urllib.request; r=urllib.request.urlopen('{url}', timeout=10); "
          "exit(0 if b'success' in r.read() else 1)\"")  # utils.BasePythonHealthCommand


def go_quote(text: str) -> str:
    """Go's strconv.Quote for the printable text KubeRay quotes (bash then reads it in double quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def submit_command(address: str, submission_id: str, entrypoint: str, runtime_env: dict) -> str:
    """BuildJobSubmitCommand(K8sJobMode), joined with spaces as KubeRay does."""
    runtime_json = json.dumps(runtime_env, sort_keys=True, separators=(",", ":"))  # sigs.k8s.io/yaml YAMLToJSON
    cmd = ["until", HEALTH.format(url=f"{address}/api/gcs_healthz"), ">/dev/null", "2>&1", ";",
           "do", "echo", go_quote(f"the Ray dashboard at {address} does not report a healthy GCS yet"), ";",
           "sleep", "2", ";", "done", ";",
           "if", "!", "ray", "job", "status", "--address", address, submission_id, ">/dev/null", "2>&1", ";", "then",
           "ray", "job", "submit", "--address", address, "--no-wait", "--runtime-env-json", go_quote(runtime_json),
           "--submission-id", submission_id, "--", entrypoint.strip(), ";", "fi", ";",
           "ray", "job", "logs", "--address", address, "--follow", submission_id]
    return " ".join(cmd)
