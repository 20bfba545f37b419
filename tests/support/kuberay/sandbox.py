"""Pod sandboxes: a command run as the rendered pod would run it.

For each pod the harness builds one bash script, run as root in a private mount namespace
(``unshare --mount``), that ends by exec'ing the container's command:

* the whole root filesystem is bind-remounted read-only (/proc, /sys and /dev excepted), as
  ``readOnlyRootFilesystem: true`` makes it;
* every declared volumeMount is writable: an emptyDir is a fresh, empty tmpfs of its sizeLimit at the
  literal path (/tmp, /dev/shm) or, for paths this host does not have (/data-cache, /app/.dvc/tmp), at
  the same path under the common mount point ``<root>/pod`` (a bind mount of the pod's own folder
  ``<root>/pods/<pod>``, which holds the image's /app: read-only, root-owned); a PVC is a host folder;
* the interpreter lives under a folder the pod's user cannot enter (/root, mode 700): a tmpfs covers
  that folder and the interpreter's own folder is bind-mounted back read-only;
* ``setpriv`` switches to runAsUser/runAsGroup (fsGroup as supplementary group, no capabilities, no new
  privileges) and ``env -i`` starts the process with exactly the pod's env, in the container's workdir.

So the harness's root must not live under /tmp (each pod gets its own /tmp): it lives under /var/tmp.
While a pod runs, the harness sees its volumes through ``/proc/<pid>/root``.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import services
from tests.support.kuberay.env import ServiceMap, local_env, missing_prefixes, rewrite_pod_path
from tests.support.kuberay.rendering import VENV_BIN, ContractError, ImageSpec, Substitutions

EXEMPT = ("/proc", "/sys", "/dev")  # a container gets its own; not made read-only here


def quantity(q) -> float:
    import re

    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * units[m.group(2)]


@dataclass
class Volume:
    path: str  # where the pod's processes see it (rewritten when this host lacks the path)
    size: int  # bytes (tmpfs size)
    host: Path | None = None  # a PVC: the host folder that persists it
    read_only: bool = False


@dataclass
class PodSandbox:
    name: str
    root: Path  # the pod's folder on the host (<root>/pods/<name>)
    mount: Path  # the common mount point (<root>/pod) at which the pod sees its folder
    volumes: list[Volume]
    uid: int
    gid: int
    groups: list[int]
    env: dict[str, str]
    workdir: str
    prefixes: list[str]  # paths this host does not have, rewritten to <mount>/...
    process: services.Managed | None = field(default=None, repr=False)

    def pod_path(self, path: str) -> str:
        """A path as the manifest names it -> as the pod's processes see it."""
        return rewrite_pod_path(path, self.prefixes, str(self.mount))

    def live_path(self, path: str) -> Path:
        """A path inside the running pod (a manifest path), as the harness can read it."""
        if self.process is None or not self.process.alive():
            raise RuntimeError(f"{self.name} is not running: its volumes are gone")
        return Path(f"/proc/{self.process.pid}/root") / self.pod_path(path).lstrip("/")

    def script(self) -> str:
        m = "mount -n"  # -n: /etc/mtab is read-only from the second step on
        hidden, interpreter = _hidden_interpreter()
        stage = self.root.parent.parent / "interpreter-stage"
        lines = ["set -euo pipefail", f"{m} --make-rprivate /",
                 f"{m} --bind {q(self.root)} {q(self.mount)}"]
        persistent = [v for v in self.volumes if v.host is not None]
        for v in persistent:
            lines.append(f"{m} --bind {q(v.host)} {q(v.path)}")
        if hidden:
            lines.append(f"{m} --bind {q(interpreter)} {q(stage)}")
        keep = " ".join(q(v.path) for v in persistent)
        lines += [
            "mapfile -t points < <(awk '{print $5}' /proc/self/mountinfo)",
            'for p in "${points[@]}"; do',
            f'  case "$p" in {"|".join(f"{e}|{e}/*" for e in EXEMPT)}) continue;; *\\\\*) continue;; esac',
            f'  for k in {keep or "-"}; do [ "$p" = "$k" ] && continue 2; done',
            f'  {m} -o remount,bind,ro "$p"',
            "done",
        ]
        if hidden:
            lines += [f"{m} -t tmpfs -o size=1m,mode=0755 tmpfs {q(hidden)}", f"mkdir -p {q(interpreter)}",
                      f"{m} --move {q(stage)} {q(interpreter)}", f"{m} -o remount,bind,ro {q(interpreter)}",
                      f"{m} -o remount,ro {q(hidden)}"]
        group = self.groups[0] if self.groups else 0
        for v in sorted(self.volumes, key=lambda v: v.path.count("/")):  # a volume inside another: after it
            if v.host is None:  # emptyDir: world-writable like the kubelet's, group-owned by fsGroup
                lines.append(f"{m} -t tmpfs -o size={v.size},mode=2777,gid={group} tmpfs {q(v.path)}")
            if v.read_only:
                lines.append(f"{m} -o remount,bind,ro {q(v.path)}")
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        names = " ".join(sorted(self.env))
        lines += [f"cd {q(self.workdir)}", "keep=()", f"for n in {names}; do keep+=(\"$n=${{!n}}\"); done",
                  f'exec setpriv --reuid={self.uid} --regid={self.gid} {groups} --no-new-privs --inh-caps=-all '
                  f'--bounding-set=-all env -i "${{keep[@]}}" "$@"']
        return "\n".join(lines)

    def argv(self, command: list[str]) -> list[str]:
        """``command`` inside this pod. Run it with ``env=self.env`` (the script keeps exactly those names)."""
        return ["unshare", "--mount", "bash", "-c", self.script(), self.name, *command]

    def run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess:
        """A one-shot container (a Job's pod): its output, exit status."""
        return subprocess.run(self.argv(command), env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, command: list[str], log_dir: Path) -> services.Managed:
        """A long-running container; stopped by its process group like every harness process."""
        self.process = services.start(self.name, self.argv(command), log_dir, env=self.env)
        return self.process


def q(path) -> str:
    return shlex.quote(str(path))


def _hidden_interpreter() -> tuple[Path | None, Path]:
    """(the ancestor other users cannot enter, the interpreter's folder) for the venv's Python."""
    interpreter = (VENV_BIN / "python").resolve().parents[1]
    for folder in reversed(interpreter.parents):
        if folder != Path("/") and not folder.stat().st_mode & stat.S_IXOTH:
            return folder, interpreter
    return None, interpreter


def _check_reachable(path: Path, uid: int) -> None:
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if folder.stat().st_uid != uid and not mode & stat.S_IXOTH:
            raise ContractError(f"[harness] {path} is not reachable for uid {uid} ({folder} is mode "
                                f"{oct(mode & 0o777)}): the pods run the venv as that user")


def pod_sandbox(name: str, pod_spec: dict, container: dict, env: dict[str, str], image: ImageSpec, root: Path,
                subs: Substitutions, svc: ServiceMap, extra_volumes: list[tuple[str, int]] = ()) -> PodSandbox:
    """The sandbox of ``container`` of ``pod_spec``, ``env`` its whole env as the manifest names things.

    The env's Service names and paths are made local (env.local_env). ``extra_volumes``: (mountPath,
    bytes) of emptyDirs something other than the manifest adds (KubeRay's /dev/shm).
    """
    if str(root).startswith("/tmp/") or root == Path("/tmp"):
        raise ContractError(f"[harness] root {root} is under /tmp, which every pod gets as its own tmpfs")
    pod_sc, sc = pod_spec.get("securityContext") or {}, container.get("securityContext") or {}
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image.uid)))
    gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", image.gid)))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ContractError(f"[chart] {name}: runAsNonRoot but the container would run as uid 0")
    if not sc.get("readOnlyRootFilesystem"):
        raise ContractError(f"[harness] {name}: only readOnlyRootFilesystem: true is reproduced (no writable layer)")
    groups = [int(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []
    groups += [int(g) for g in pod_sc.get("supplementalGroups", [])]
    root.chmod(0o755)  # mkdtemp makes it 0700: the pod's user must reach its mount point below it
    _check_reachable(VENV_BIN, uid)

    mounts = container.get("volumeMounts", []) or []
    workdir = container.get("workingDir") or image.workdir
    prefixes = missing_prefixes([m["mountPath"] for m in mounts] + ["/app", workdir])
    mount_point = root / "pod"
    mount_point.mkdir(parents=True, exist_ok=True)
    pod_root = root / "pods" / name
    _install_image_files(pod_root / "app", image)
    (root / "interpreter-stage").mkdir(exist_ok=True)
    by_name = {v["name"]: v for v in pod_spec.get("volumes", []) or []}
    limits = (container.get("resources") or {}).get("limits", {})
    volumes = []
    for m in mounts:
        volume = by_name.get(m["name"])
        if volume is None:
            raise ContractError(f"[chart] {name}: volumeMount {m['name']!r} names no volume of the pod")
        path = rewrite_pod_path(m["mountPath"], prefixes, str(mount_point))
        if path != m["mountPath"]:
            (pod_root / m["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            empty_dir = volume["emptyDir"] or {}  # no sizeLimit: what the container's limits allow
            fallback = limits.get("memory" if empty_dir.get("medium") == "Memory" else "ephemeral-storage", "1Gi")
            size = empty_dir.get("sizeLimit") or fallback
            volumes.append(Volume(path, int(quantity(size)), read_only=bool(m.get("readOnly"))))
        elif "persistentVolumeClaim" in volume:
            host = root / "pvcs" / volume["persistentVolumeClaim"]["claimName"]
            host.mkdir(parents=True, exist_ok=True)
            os.chown(host, 0, groups[0] if groups else gid)  # the kubelet gives fsGroup the volume
            host.chmod(0o2775)
            volumes.append(Volume(path, 0, host=host, read_only=bool(m.get("readOnly"))))
            subs.add(f"{name} volume {m['name']}", f"PVC {volume['persistentVolumeClaim']['claimName']}", str(host),
                     "no storage class here: a host folder that outlives the pod")
        else:
            raise ContractError(f"[harness] {name}: volume {m['name']!r} ({sorted(volume)}) is not reproduced")
    declared = {m["mountPath"] for m in mounts}
    volumes += [Volume(path, size) for path, size in extra_volumes if path not in declared]
    local_workdir = rewrite_pod_path(workdir, prefixes, str(mount_point))
    where = f"{name.rsplit('-', 1)[0]} {container.get('name', 'container')}"
    return PodSandbox(name, pod_root, mount_point, volumes, uid, gid, groups,
                      local_env(env, where, svc, prefixes, str(mount_point), subs), local_workdir, prefixes)


def _install_image_files(app: Path, image: ImageSpec) -> None:
    """What the image has in /app for the job: the Dockerfile's COPYs (minus the installed package), root-owned."""
    import shutil

    from tests.support.kuberay.rendering import ROOT

    for rel in image.files:
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, app / rel)
    # RUN dvc config --local core.no_scm true && mkdir -p /app/.dvc/tmp
    (app / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    (app / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    for path in [app, *app.rglob("*")]:  # RUN chown -R root:root /app && chmod -R a+rX,go-w /app
        path.chmod(0o755 if path.is_dir() else 0o644)
