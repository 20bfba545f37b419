"""One container: its root filesystem, mounts, user and environment, run in the pod's namespaces.

The container's root is an overlay: this host's filesystem stands for the image's (the venv stands for the
image's Python, as images.py says), the image's own files (its /app, /etc/passwd) come first, and a tmpfs is
the writable layer, remounted read-only when the container asks for ``readOnlyRootFilesystem``. Nothing a
container writes reaches the host, except through a volume. The process chain execs all the way down
(nsenter, unshare, bash, chroot, setpriv, env), so the PID its shim forks is the container's main process:
SIGTERM reaches it as a runtime delivers it. The shim (shim.py), not the agent, is its parent, as a runtime's
is: a restarted agent adopts the container from the shim's files.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.node_agent import pids
from tests.support.node_agent.network import HOST_ENV

WRITABLE_LAYER = "256m"  # the container's writable layer (a tmpfs); ephemeral-storage limits are not enforced
DEV_SHM = "64m"  # what a container runtime gives /dev/shm unless a volume replaces it
SHIM = Path(__file__).with_name("shim.py")


def q(value) -> str:
    return shlex.quote(str(value))


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host, or in the pod holder's mount namespace (an emptyDir)
    path: str  # inside the container
    read_only: bool = False


@dataclass
class ContainerSpec:
    pod: str  # namespace/name
    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    mounts: list[Mount]
    image_layer: Path  # the image's own files, laid over this host's
    hosts: Path  # the pod's /etc/hosts
    state: Path  # this container's folder (root mount point, env file, log)

    def script(self) -> str:
        m = "mount -n"
        root, writable = self.state / "root", self.state / "writable"
        lines = ["set -euo pipefail", f"{m} --make-rprivate /",
                 f"{m} -t tmpfs -o size={WRITABLE_LAYER},mode=0755 tmpfs {q(writable)}",
                 f"mkdir -p {q(writable)}/upper {q(writable)}/work",
                 f"cp -a {q(self.image_layer)}/. {q(writable)}/upper/",
                 f"{m} -t overlay overlay -o lowerdir=/,upperdir={q(writable)}/upper,workdir={q(writable)}/work "
                 f"{q(root)}",
                 # the image's /tmp is empty; this host's is not the container's business
                 f"{m} -t tmpfs -o size=64m,mode=1777 tmpfs {q(root)}/tmp"]
        lines += [f"{m} --rbind /{d} {q(root)}/{d}" for d in ("proc", "sys", "dev")]
        lines += [f"{m} -t tmpfs -o size={DEV_SHM},mode=1777 shm {q(root)}/dev/shm",
                  f"{m} --bind {q(self.hosts)} {q(root)}/etc/hosts",
                  f"{m} --bind {q(self.hosts.with_name('resolv.conf'))} {q(root)}/etc/resolv.conf"]
        for mount in sorted(self.mounts, key=lambda m: m.path.rstrip("/").count("/")):  # parents first
            target = f"{q(root)}{q(mount.path)}"
            make = f"mkdir -p {target}" if mount.source.is_dir() else f"mkdir -p $(dirname {target}); touch {target}"
            lines += [make, f"{m} --bind {q(mount.source)} {target}"]
            if mount.read_only:
                lines.append(f"{m} -o remount,bind,ro {target}")
        if self.read_only_root:
            if all(mount.path.rstrip("/") != "/tmp" for mount in self.mounts):  # else a volume covers the tmpfs
                lines.append(f"{m} -o remount,ro {q(root)}/tmp")
            lines.append(f"{m} -o remount,ro {q(root)}")
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        lines += ["mapfile -d '' keep < " + q(self.state / "env"),
                  f"exec chroot {q(root)} setpriv --reuid={self.uid} --regid={self.gid} {groups} --no-new-privs "
                  f'--inh-caps=-all --bounding-set=-all env -i --chdir={q(self.workdir)} "${{keep[@]}}" "$@"']
        return "\n".join(lines)

    def prepare(self) -> None:
        (self.state / "root").mkdir(parents=True, exist_ok=True)
        (self.state / "writable").mkdir(exist_ok=True)
        env_file = self.state / "env"  # may hold Secret values: root's alone, as the kubelet's copies are
        env_file.touch(mode=0o600)
        env_file.write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in self.env.items()))
        (self.state / "user.json").write_text(json.dumps({"uid": self.uid, "gid": self.gid, "groups": self.groups}))

    def command(self, holder_pid: int, argv: list[str] | None = None) -> list[str]:
        return ["nsenter", f"--target={holder_pid}", "--net", "--uts", "--ipc", "--mount",
                "unshare", "--mount", "bash", "-c", self.script(), self.name, *(argv or self.argv)]


@dataclass(frozen=True)
class Identity:
    """Whom a container runs as: what a later process inside it (an exec probe) runs as too."""

    uid: int
    gid: int
    groups: list[int]
    env: dict[str, str]

    @classmethod
    def of(cls, folder: Path) -> Identity:
        """As ContainerSpec.prepare wrote it to the container's folder."""
        user = json.loads((folder / "user.json").read_text())
        pairs = (item.split(b"=", 1) for item in (folder / "env").read_bytes().split(b"\0") if item)
        return cls(user["uid"], user["gid"], user["groups"], {k.decode(): v.decode() for k, v in pairs})


@dataclass
class Running:
    """A started container, known by its shim's files (shim.py), so that an agent that did not start it (a
    restarted one) can adopt it: its main process, how it ended, its log (which its shim holds open)."""

    folder: Path
    pid: int  # the container's main process
    started_at: str
    identity: Identity
    shim: subprocess.Popen | None = None  # when this agent started it: its child, reaped here
    exit_code: int | None = None
    finished_at: str | None = None

    def poll(self) -> int | None:
        if self.exit_code is None:
            shim_gone = self.shim.poll() is not None if self.shim else pids.alive(self.folder / "shim.pid") is None
            ended = json.loads((self.folder / "exit").read_text()) if (self.folder / "exit").exists() else None
            if ended is None and shim_gone:  # its shim was killed: the container's end is unknown, so end it
                self.kill_group()
                ended = {"exitCode": 128 + signal.SIGKILL, "finishedAt": None}
            if ended is not None:
                self.exit_code, self.finished_at = ended["exitCode"], ended["finishedAt"]
        return self.exit_code

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.exit_code

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the process and whatever it left in its group
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.kill_group()
        self.wait(10)


def start(spec: ContainerSpec, holder_pid: int, log: Path, started_at: str) -> Running:
    spec.prepare()
    return launch(spec.state, spec.command(holder_pid), log, started_at, Identity.of(spec.state))


def launch(folder: Path, argv: list[str], log: Path, started_at: str, identity: Identity) -> Running:
    """``argv`` under a shim of its own (shim.py), its output appended to ``log``."""
    for name in ("shim.pid", "pid", "exit"):  # an earlier run's
        (folder / name).unlink(missing_ok=True)
    with log.open("ab") as handle:
        shim = subprocess.Popen([sys.executable, "-S", str(SHIM), str(folder), *argv], stdin=subprocess.DEVNULL,
                                stdout=handle, stderr=subprocess.STDOUT, env=HOST_ENV, start_new_session=True)
    deadline = time.monotonic() + 30
    while (pid := pids.recorded_pid(folder / "pid")) is None:
        if shim.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{folder}: the shim did not start the container (shim exit {shim.poll()})")
        time.sleep(0.01)
    return Running(folder, pid, started_at, identity, shim)


def adopt(folder: Path, started_at: str) -> Running | None:
    """A container an earlier agent started (its shim's files in ``folder``), or None if it never started."""
    pid = pids.recorded_pid(folder / "pid")
    return None if pid is None else Running(folder, pid, started_at, Identity.of(folder))


def exec_in(running: Running, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``argv`` inside a running container (an exec probe): its namespaces, root, workdir, user and env."""
    spec, pid = running.identity, running.pid
    groups = f"--groups={','.join(map(str, spec.groups))}" if spec.groups else "--clear-groups"
    command = ["/usr/bin/nsenter", f"--target={pid}", "--all", "--root", "--wd", "/usr/bin/setpriv",
               f"--reuid={spec.uid}", f"--regid={spec.gid}", groups, "--no-new-privs", "--inh-caps=-all",
               "--bounding-set=-all", *argv]
    return subprocess.run(command, env=spec.env, capture_output=True, text=True, timeout=timeout)


def remove_state(state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
