"""What the kubelet resolves from a pod spec before a container starts: its env and its volumes' files.

Everything comes from the API server, with the node's own credentials (the Node authorizer lets a node read
the ConfigMaps and Secrets, and request the service-account tokens, of the pods bound to it, nothing more).
Pods are plain dicts as the API serves them (camelCase keys).
"""

from __future__ import annotations

import base64
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.utils.quantity import parse_quantity


class PodConfigError(Exception):
    """The pod cannot start as specified (the kubelet's CreateContainerConfigError)."""


@dataclass
class Sources:
    """The API objects a pod's env and volumes read."""

    core: client.CoreV1Api

    def configmap(self, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
        cm = self._read(self.core.read_namespaced_config_map, "configmap", namespace, name, optional)
        if cm is None:
            return None
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    def secret(self, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
        secret = self._read(self.core.read_namespaced_secret, "secret", namespace, name, optional)
        return None if secret is None else {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    @staticmethod
    def _read(read, kind: str, namespace: str, name: str, optional: bool):
        """The object, None when it is missing and optional; else the kubelet's CreateContainerConfigError."""
        try:
            return read(name, namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            problem = "not found" if exc.status == 404 else f"cannot be read ({exc.status} {exc.reason})"
            raise PodConfigError(f'{kind} "{name}" {problem}') from exc

    def token(self, pod: dict, audience: str | None, seconds: int) -> str:
        spec = client.V1TokenRequestSpec(
            audiences=[audience] if audience else [], expiration_seconds=seconds,
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name=pod["metadata"]["name"],
                                                           uid=pod["metadata"]["uid"]))
        answer = self.core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default", pod["metadata"]["namespace"],
            client.AuthenticationV1TokenRequest(spec=spec))
        return answer.status.token


# ------------------------------------------------------------------ the downward API


def field_value(pod: dict, path: str) -> str:
    meta, status = pod["metadata"], pod.get("status") or {}
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return (meta.get(keyed.group(1)) or {}).get(keyed.group(2), "")
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
              "spec.nodeName": pod["spec"].get("nodeName", ""),
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
              "status.hostIP": status.get("hostIP", ""), "status.podIP": status.get("podIP", ""),
              "status.hostIPs": ",".join(a["ip"] for a in status.get("hostIPs") or []),
              "status.podIPs": ",".join(a["ip"] for a in status.get("podIPs") or [])}
    if path in ("metadata.labels", "metadata.annotations"):
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
    if path not in simple:
        raise PodConfigError(f"fieldRef {path!r} is not supported")
    return simple[path]


def resource_value(pod: dict, ref: dict, allocatable: dict[str, str]) -> str:
    """resourceFieldRef: a container's limit (the node's allocatable when unset) or request, over the divisor."""
    containers = pod["spec"]["containers"] + (pod["spec"].get("initContainers") or [])
    container = next((c for c in containers if c["name"] == ref.get("containerName")), containers[0])
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None:
        value = allocatable.get(resource, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(max(1 if resource == "cpu" else 0, math.ceil(parse_quantity(value) / divisor)))


# ------------------------------------------------------------------ env


def expand(value: str, env: dict[str, str]) -> str:
    """$(NAME) from what is defined so far; $$ escapes; an unknown reference stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def container_env(pod: dict, container: dict, sources: Sources, allocatable: dict[str, str]) -> dict[str, str]:
    """envFrom, then env (in order, with $(VAR) expansion), as the kubelet builds a container's env."""
    namespace, env = pod["metadata"]["namespace"], {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef") or source.get("secretRef")
        read = sources.configmap if "configMapRef" in source else sources.secret
        data = read(namespace, ref["name"], bool(ref.get("optional"))) or {}
        env.update({source.get("prefix", "") + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        name, value_from = var["name"], var.get("valueFrom")
        if value_from is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            env[name] = resource_value(pod, {"containerName": container["name"], **value_from["resourceFieldRef"]},
                                       allocatable)
        else:
            ref = value_from.get("configMapKeyRef") or value_from.get("secretKeyRef")
            read = sources.configmap if "configMapKeyRef" in value_from else sources.secret
            data = read(namespace, ref["name"], bool(ref.get("optional")))
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise PodConfigError(f"couldn't find key {ref['key']} in {ref['name']}")
            env[name] = data[ref["key"]].decode()
    return env


# ------------------------------------------------------------------ volumes with files


def write_files(folder: Path, files: dict[str, tuple[bytes, int]], fs_group: int | None) -> Path:
    """One file per entry (path -> (content, mode)), root-owned, group fsGroup (the kubelet applies it)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for rel, (content, mode) in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chown(target, 0, 0 if fs_group is None else fs_group)
        target.chmod(mode)
    return folder


def keyed_files(data: dict[str, bytes], ref: dict, what: str) -> dict[str, tuple[bytes, int]]:
    default = ref.get("defaultMode", 0o644)
    items = ref.get("items") or [{"key": k, "path": k} for k in data]
    out = {}
    for item in items:
        if item["key"] not in data:
            if ref.get("optional"):
                continue
            raise PodConfigError(f"{what}: no key {item['key']!r}")
        out[item["path"]] = (data[item["key"]], item.get("mode", default))
    return out


def projected_files(pod: dict, projected: dict, sources: Sources, allocatable: dict[str, str]) -> dict:
    namespace, default, out = pod["metadata"]["namespace"], projected.get("defaultMode", 0o644), {}
    for source in projected.get("sources") or []:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            value = sources.token(pod, token.get("audience"), int(token.get("expirationSeconds", 3607)))
            out[token["path"]] = (value.encode(), default)
        elif "configMap" in source or "secret" in source:
            kind = "configMap" if "configMap" in source else "secret"
            ref = {"defaultMode": default, **source[kind]}
            read = sources.configmap if kind == "configMap" else sources.secret
            data = read(namespace, ref["name"], bool(ref.get("optional"))) or {}
            out.update(keyed_files(data, ref, f"{kind} {ref['name']}"))
        elif "downwardAPI" in source:
            out.update(downward_files(pod, source["downwardAPI"], allocatable, default))
        else:
            raise PodConfigError(f"projected source {sorted(source)} is not supported by this node")
    return out


def downward_files(pod: dict, downward: dict, allocatable: dict[str, str], default: int) -> dict:
    out = {}
    for item in downward.get("items") or []:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(pod, item["resourceFieldRef"], allocatable)
        out[item["path"]] = (value.encode(), item.get("mode", downward.get("defaultMode", default)))
    return out


def volume_files(pod: dict, volume: dict, sources: Sources, allocatable: dict[str, str]) -> dict | None:
    """The files of a ConfigMap, Secret, projected or downwardAPI volume; None for other kinds."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        ref = volume["configMap"]
        return keyed_files(sources.configmap(namespace, ref["name"], bool(ref.get("optional"))) or {}, ref,
                           f"configmap {ref['name']}")
    if "secret" in volume:
        ref = {"name": volume["secret"]["secretName"], **volume["secret"]}
        return keyed_files(sources.secret(namespace, ref["name"], bool(ref.get("optional"))) or {}, ref,
                           f"secret {ref['name']}")
    if "projected" in volume:
        return projected_files(pod, volume["projected"], sources, allocatable)
    if "downwardAPI" in volume:
        return downward_files(pod, volume["downwardAPI"], allocatable, volume["downwardAPI"].get("defaultMode", 0o644))
    return None
