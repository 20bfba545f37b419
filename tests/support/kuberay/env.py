"""Env resolution: a container's env exactly as the kubelet computes it from the rendered objects, and the
names the package reads; the static contract checks (contract.py) compare the two.
"""

from __future__ import annotations

import ast
import difflib

from tests.support.kuberay.rendering import ROOT, ContractError, PlatformView


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
