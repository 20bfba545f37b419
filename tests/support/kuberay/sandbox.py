"""Pod sandboxes: each container run as the rendered pod would run it.

A pod's emptyDirs are tmpfs of their sizeLimit, mounted in a private mount namespace that a holder
process (``unshare --mount ... sleep``) keeps for the pod's lifetime, so the pod's containers (init
containers, then the main one) share them, as in Kubernetes. Each container is one bash script, run as
root in a copy of that namespace (``nsenter`` + ``unshare --mount``), ending by exec'ing its command:

* every volumeMount is bound at its path: the literal one (/tmp, /dev/shm) or, for paths this host does
  not have (/data-cache, /app/.dvc/tmp), the same path under the common mount point ``<root>/pod``, a
  bind mount of the pod's own folder ``<root>/pods/<pod>`` (the image's /app: read-only, root-owned);
  a PVC, ConfigMap or Secret volume is a host folder (config_volumes.py writes the latter two's files);
* everything else is remounted read-only (/proc, /sys and /dev excepted), as ``readOnlyRootFilesystem`` does;
* the interpreter lives under a folder the pod's user cannot enter (/root, mode 700): a tmpfs covers
  that folder and the interpreter's own folder is bind-mounted back read-only;
* ``setpriv`` switches to runAsUser/runAsGroup (fsGroup as supplementary group, no capabilities, no new
  privileges) and ``env -i`` starts the process with exactly the container's env, in its workdir.

So the harness's root must not live under /tmp (each pod gets its own /tmp): it lives under /var/tmp.
The harness reads a pod's emptyDirs through ``/proc/<holder>/root``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import services
from tests.support.kuberay.config_volumes import project_files
from tests.support.kuberay.env import ServiceMap, local_env, missing_prefixes, rewrite_pod_path
from tests.support.kuberay.image_model import (
    check_image_user,
    check_reachable,
    hidden_interpreter,
    image_passwd,
    install_image_files,
)
from tests.support.kuberay.rendering import VENV_BIN, ContractError, ImageSpec, PlatformView, Substitutions

EXEMPT = ("/proc", "/sys", "/dev")  # a container gets its own; not made read-only here
HOST_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # for the root-side steps (mount, nsenter, setpriv)


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * units[m.group(2)]


def q(path) -> str:
    return shlex.quote(str(path))


@dataclass
class Volume:
    name: str
    size: int = 0  # an emptyDir: tmpfs bytes
    host: Path | None = None  # a PVC (the host folder that persists it), a ConfigMap or Secret (its files)
    unsupported: str = ""  # a volume type not reproduced (a container that mounts it is refused)
    read_only: bool = False  # Secret and ConfigMap volumes: the kubelet mounts them read-only


@dataclass
class PodVolumes:
    """A pod's volumes; its emptyDirs live as long as the holder process that keeps their namespace."""

    pod: str
    stage: Path  # each emptyDir at stage/<name> in the holder's namespace
    volumes: dict[str, Volume]
    group: int
    holder: services.Managed | None = None

    def start(self, log_dir: Path) -> int:
        if self.holder is None or not self.holder.alive():
            lines = ["set -eu", "mount -n --make-rprivate /"]
            for v in self.volumes.values():
                if not v.host and not v.unsupported:
                    (self.stage / v.name).mkdir(parents=True, exist_ok=True)
                    lines.append(f"mount -n -t tmpfs -o size={v.size},mode=2777,gid={self.group} tmpfs "
                                 f"{q(self.stage / v.name)}")  # like the kubelet's: world-writable, fsGroup's
            lines += ["echo volumes-ready", "exec sleep infinity"]
            self.holder = services.start(f"{self.pod}-volumes", ["unshare", "--mount", "bash", "-c", "\n".join(lines)],
                                         log_dir, env=HOST_PATH)
            deadline = time.monotonic() + 20
            while "volumes-ready" not in self.holder.log.read_text(errors="replace"):
                if not self.holder.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.pod}: its volumes did not mount: {self.holder.tail()}")
                time.sleep(0.05)
        return self.holder.pid

    def stop(self) -> None:
        if self.holder is not None:
            self.holder.stop(timeout=5)

    def source(self, name: str) -> Path:
        """Where a container binds volume ``name`` from (inside the holder's namespace)."""
        volume = self.volumes[name]
        return volume.host if volume.host else self.stage / name


@dataclass
class Mount:
    volume: str
    path: str  # where the container sees it (rewritten when this host lacks the path)
    read_only: bool = False


@dataclass
class PodSandbox:
    """One container of a pod."""

    name: str
    root: Path  # the pod's folder on the host (<root>/pods/<name>)
    mount: Path  # the common mount point (<root>/pod) at which the pod sees its folder
    volumes: PodVolumes
    mounts: list[Mount]
    uid: int
    gid: int
    groups: list[int]
    env: dict[str, str]
    workdir: str
    prefixes: list[str]  # paths this host does not have, rewritten to <mount>/...
    process: services.Managed | None = field(default=None, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.root.parents[1] / "logs"

    def pod_path(self, path: str) -> str:
        """A path as the manifest names it -> as the pod's processes see it."""
        return rewrite_pod_path(path, self.prefixes, str(self.mount))

    def live_path(self, path: str) -> Path:
        """A path inside the pod (as the manifest names it, or as the pod sees it), as the harness reads it."""
        local = self.pod_path(path)
        for m in sorted(self.mounts, key=lambda m: len(m.path), reverse=True):
            if local == m.path or local.startswith(m.path + "/"):
                rest = local[len(m.path):].lstrip("/")
                if self.volumes.volumes[m.volume].host:
                    return self.volumes.source(m.volume) / rest
                if self.volumes.holder is None or not self.volumes.holder.alive():
                    raise RuntimeError(f"{self.name}: the pod is gone, and its emptyDir {m.volume} with it")
                return Path(f"/proc/{self.volumes.holder.pid}/root") / str(self.volumes.source(m.volume)).lstrip("/") / rest
        return self.root / Path(local).relative_to(self.mount) if local.startswith(f"{self.mount}/") else Path(local)

    def script(self) -> str:
        m = "mount -n"  # -n: /etc/mtab is read-only from the sweep on
        hidden, interpreter = hidden_interpreter()
        stage = self.root.parents[1] / "interpreter-stage"
        lines = ["set -euo pipefail", f"{m} --make-rprivate /", f"{m} --bind {q(self.root)} {q(self.mount)}"]
        for mount in sorted(self.mounts, key=lambda m: m.path.count("/")):  # a volume inside another: after it
            # its mount point inside the parent volume, made as the runtime makes it (root, 0755)
            lines.append(f"mkdir -p {q(mount.path)}")
            lines.append(f"{m} --bind {q(self.volumes.source(mount.volume))} {q(mount.path)}")
        passwd = self.root.parents[1] / "image-passwd"
        passwd.write_text(image_passwd())
        passwd.chmod(0o644)
        lines.append(f"{m} --bind {q(passwd)} /etc/passwd")  # the image's accounts, not this host's
        if hidden:
            lines.append(f"{m} --bind {q(interpreter)} {q(stage)}")
        keep = " ".join(q(mount.path) for mount in self.mounts) or "-"
        lines += [
            "mapfile -t points < <(awk '{print $5}' /proc/self/mountinfo)",
            'for p in "${points[@]}"; do',
            f'  case "$p" in {"|".join(f"{e}|{e}/*" for e in EXEMPT)}) continue;; *\\\\*) continue;; esac',
            f'  for k in {keep}; do [ "$p" = "$k" ] && continue 2; done',
            f'  {m} -o remount,bind,ro "$p"',
            "done",
            f"{m} -t tmpfs -o size=4k,mode=0755,ro tmpfs {q(self.volumes.stage.parent)}",  # the other volumes: gone
        ]
        if hidden:
            lines += [f"{m} -t tmpfs -o size=1m,mode=0755 tmpfs {q(hidden)}", f"mkdir -p {q(interpreter)}",
                      f"{m} --move {q(stage)} {q(interpreter)}", f"{m} -o remount,bind,ro {q(interpreter)}",
                      f"{m} -o remount,ro {q(hidden)}"]
        lines += [f"{m} -o remount,bind,ro {q(mount.path)}" for mount in self.mounts if mount.read_only]
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        names = " ".join(sorted(self.env))
        lines += [f"cd {q(self.workdir)}", "keep=()", f"for n in {names}; do keep+=(\"$n=${{!n}}\"); done",
                  f'exec setpriv --reuid={self.uid} --regid={self.gid} {groups} --no-new-privs --inh-caps=-all '
                  f'--bounding-set=-all env -i "${{keep[@]}}" "$@"']
        return "\n".join(lines)

    def argv(self, command: list[str]) -> list[str]:
        """``command`` in this container (starts the pod's volumes). Run it with ``env=self.env``."""
        holder = self.volumes.start(self.log_dir)
        return ["nsenter", f"--target={holder}", "--mount", "unshare", "--mount", "bash", "-c", self.script(),
                self.name, *command]

    def run(self, command: list[str], timeout: float, keep_volumes: bool = False) -> subprocess.CompletedProcess:
        """A one-shot container (a Job's pod): its output and exit status; the pod's volumes go with it."""
        try:
            return subprocess.run(self.argv(command), env=self.env, capture_output=True, text=True, timeout=timeout)
        finally:
            if not keep_volumes:
                self.volumes.stop()

    def start(self, command: list[str], log_dir: Path) -> services.Managed:
        """A long-running container; stopped by its process group like every harness process."""
        self.process = services.start(self.name, self.argv(command), log_dir, env=self.env)
        return self.process


def pod_volumes(name: str, pod_spec: dict, container: dict, root: Path, subs: Substitutions,
                extra: list[tuple[str, int]] = (), sources: PlatformView | None = None) -> PodVolumes:
    """The pod's volumes. ``extra``: (name, bytes) of emptyDirs something other than the manifest adds.

    An emptyDir without sizeLimit gets what ``container``'s limits allow (memory for medium Memory).
    """
    limits = (container.get("resources") or {}).get("limits", {})
    pod_sc = pod_spec.get("securityContext") or {}
    volumes = {}
    for v in pod_spec.get("volumes", []) or []:
        if "emptyDir" in v:
            empty_dir = v["emptyDir"] or {}
            fallback = limits.get("memory" if empty_dir.get("medium") == "Memory" else "ephemeral-storage", "1Gi")
            volumes[v["name"]] = Volume(v["name"], int(quantity(empty_dir.get("sizeLimit") or fallback)))
        elif "persistentVolumeClaim" in v:
            host = root / "pvcs" / v["persistentVolumeClaim"]["claimName"]
            host.mkdir(parents=True, exist_ok=True)
            os.chown(host, 0, int(pod_sc.get("fsGroup", 0)))  # the kubelet gives fsGroup the volume
            host.chmod(0o2775)
            volumes[v["name"]] = Volume(v["name"], host=host)
            subs.add(f"{name} volume {v['name']}", f"PVC {v['persistentVolumeClaim']['claimName']}", str(host),
                     "no storage class here: a host folder that outlives the pod")
        elif sources is not None and ("configMap" in v or "secret" in v):
            fs_group = int(pod_sc["fsGroup"]) if "fsGroup" in pod_sc else None
            volumes[v["name"]] = Volume(v["name"], host=project_files(v, sources, root / "files" / name / v["name"],
                                                                      fs_group), read_only=True)
        else:
            volumes[v["name"]] = Volume(v["name"], unsupported=", ".join(sorted(set(v) - {"name"})))
    volumes.update({n: Volume(n, size) for n, size in extra if n not in volumes})
    return PodVolumes(name, root / "volumes" / name, volumes, int(pod_sc.get("fsGroup", 0)))


def pod_sandbox(name: str, pod_spec: dict, container: dict, env: dict[str, str], image: ImageSpec, root: Path,
                subs: Substitutions, svc: ServiceMap, volumes: PodVolumes | None = None,
                extra_mounts: list[tuple[str, str]] = (), sources: PlatformView | None = None) -> PodSandbox:
    """The sandbox of ``container`` of ``pod_spec``, ``env`` its whole env as the manifest names things.

    The env's Service names and paths are made local (env.local_env). ``volumes``: the pod's, shared by
    its containers (default: this container's pod alone). ``extra_mounts``: (volume, mountPath) that
    something other than the manifest adds (KubeRay's /dev/shm).
    """
    if str(root).startswith("/tmp/") or root == Path("/tmp"):
        raise ContractError(f"[harness] root {root} is under /tmp, which every pod gets as its own tmpfs")
    pod_sc, sc = pod_spec.get("securityContext") or {}, container.get("securityContext") or {}
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image.uid)))
    gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", image.gid)))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ContractError(f"[chart] {name}: runAsNonRoot but the container would run as uid 0")
    check_image_user(name, uid, gid, image)
    if not sc.get("readOnlyRootFilesystem"):
        raise ContractError(f"[harness] {name}: only readOnlyRootFilesystem: true is reproduced (no writable layer)")
    groups = [int(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []
    groups += [int(g) for g in pod_sc.get("supplementalGroups", [])]
    root.chmod(0o755)  # mkdtemp makes it 0700: the pod's user must reach its mount point below it
    check_reachable(VENV_BIN, uid)
    volumes = volumes or pod_volumes(name, pod_spec, container, root, subs, sources=sources)

    declared = [(m["name"], m["mountPath"], bool(m.get("readOnly"))) for m in container.get("volumeMounts", []) or []]
    declared += [(v, path, False) for v, path in extra_mounts if path not in {p for _, p, _ in declared}]
    workdir = container.get("workingDir") or image.workdir
    # A mount inside another mount (HOME's emptyDir in /tmp's, a Secret in HOME) goes where its parent goes: the
    # runtime makes its mount point inside the parent volume, so it is never rewritten on its own.
    paths = [path for _, path, _ in declared]
    nested = {p for p in paths if any(p != o and p.startswith(o.rstrip("/") + "/") for o in paths)}
    prefixes = missing_prefixes([p for p in paths if p not in nested] + ["/app", workdir])
    mount_point = root / "pod"
    mount_point.mkdir(parents=True, exist_ok=True)
    (root / "interpreter-stage").mkdir(exist_ok=True)
    pod_root = root / "pods" / name
    install_image_files(pod_root / "app", image)
    mounts = []
    for volume, path, read_only in declared:
        if volume not in volumes.volumes:
            raise ContractError(f"[chart] {name}: volumeMount {volume!r} names no volume of the pod")
        if volumes.volumes[volume].unsupported:
            raise ContractError(f"[harness] {name}: volume {volume!r} ({volumes.volumes[volume].unsupported}) is not reproduced")
        local = rewrite_pod_path(path, prefixes, str(mount_point))
        if local != path:
            (pod_root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(volume, local, read_only or volumes.volumes[volume].read_only))
    where = f"{name.rsplit('-', 1)[0]} {container.get('name', 'container')}"
    return PodSandbox(name, pod_root, mount_point, volumes, mounts, uid, gid, groups,
                      local_env(env, where, svc, prefixes, str(mount_point), subs),
                      rewrite_pod_path(workdir, prefixes, str(mount_point)), prefixes)
