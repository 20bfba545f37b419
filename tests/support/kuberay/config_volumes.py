"""ConfigMap and Secret volumes: the files the kubelet would project, from the rendered objects.

Each such volume becomes a host folder of its own with one file per key (or per ``items`` entry, at its
``path``), with the kubelet's modes and owners: ``items[].mode``, else ``defaultMode``, else 0644; owner
root, group the pod's fsGroup (the kubelet applies fsGroup to Secret and ConfigMap volumes), so a 0440
Secret file is readable by the pod's user only through fsGroup. The sandbox binds the folder read-only
(the kubelet mounts these volumes read-only whatever the mount says). The content comes from the rendered ConfigMap or Secret (placeholders filled:
rendering.fill_placeholders), so a key that one chart names and the other does not define fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.kuberay.rendering import ContractError, PlatformView


def project_files(volume: dict, sources: PlatformView, folder: Path, fs_group: int | None = None) -> Path:
    """Write ``volume``'s files under ``folder`` and return it."""
    if "configMap" in volume:
        kind, ref = "ConfigMap", volume["configMap"]
        data, name = sources.configmap(ref["name"]), ref["name"]
    else:
        kind, ref = "Secret", volume["secret"]
        data, name = sources.secret(ref["secretName"]), ref["secretName"]
    if data is None:
        if ref.get("optional"):
            data = {}
        else:
            raise ContractError(f"[chart] volume {volume['name']!r}: {kind} {name!r} is not rendered")
    items = ref.get("items") or [{"key": k, "path": k} for k in data]
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for item in items:
        if item["key"] not in data:
            raise ContractError(f"[chart] volume {volume['name']!r}: {kind} {name!r} has no key {item['key']!r} "
                                f"(it has {sorted(data)})")
        target = folder / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
        os.chown(target, 0, 0 if fs_group is None else fs_group)
        target.chmod(item.get("mode", ref.get("defaultMode", 0o644)))
    return folder
