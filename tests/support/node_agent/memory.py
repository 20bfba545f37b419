"""Memory limits, enforced as a container runtime enforces them: each container with ``resources.limits.memory``
runs in a memory cgroup of its own, ``<the agent's cgroup>/kuberay-node/<pod uid>/<container>``, whose limit the
kernel holds it to; over it, the kernel's OOM killer kills a process inside (SIGKILL) and counts it. A container
that ended non-zero after such a kill is reported ``OOMKilled``, as containerd reports a container whose cgroup
saw an OOM kill. Only the container's process tree is inside (container.py's script joins it right before its
``exec chroot``), not its shim or the agent.

cgroup v1 (``memory.limit_in_bytes``, ``oom_kill`` in ``memory.oom_control``) and v2 (``memory.max``,
``oom_kill`` in ``memory.events``; the agent's cgroup must let its children have the memory controller). Where
no writable memory controller is found, the agent logs that limits are not enforced and runs without them.
Each container's cgroup is named in its folder (the file ``cgroup``), so that a restarted agent, or
scripts/cluster-down.sh, finds it again whichever cgroup it runs in itself.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("node-agent")
ROOT = Path("/sys/fs/cgroup")
NODE = "kuberay-node"
LOCK = threading.Lock()  # a pod's folder is made by one container while another's removal may empty it


def own_cgroup() -> tuple[Path, str]:
    """This process's memory cgroup folder and the controller's version ("v1" or "v2")."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return ROOT / "memory" / path.lstrip("/"), "v1"
    unified = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
    return ROOT / unified.lstrip("/"), "v2"


def enable_v2(folder: Path) -> None:
    """Give ``folder``'s children the memory controller (refused where ``folder`` itself holds processes)."""
    if "memory" not in (folder / "cgroup.subtree_control").read_text().split():
        (folder / "cgroup.subtree_control").write_text("+memory")


@functools.cache
def node_cgroup() -> Path | None:
    """``<the agent's cgroup>/kuberay-node`` once checked writable (made and removed again: make() makes it as a
    container needs it, remove() removes it when the last is gone); None, logged, where it cannot be made."""
    own, version = own_cgroup()
    try:
        if version == "v2":
            enable_v2(own)
        (own / NODE).mkdir(exist_ok=True)
    except OSError as exc:
        log.warning("memory limits are NOT enforced: no writable memory controller for this agent (%s: %s)",
                    own, exc)
        return None
    try:
        (own / NODE).rmdir()
    except OSError:
        pass  # it holds containers' cgroups (an earlier agent's, adopted)
    log.info("memory limits enforced: each container with a limit in a cgroup (%s) under %s", version, own / NODE)
    return own / NODE


def make_folders(path: Path) -> None:
    """``path`` and the folders above it up to the node's, each passing the memory controller down (v2)."""
    for folder in (path.parent.parent, path.parent, path):
        folder.mkdir(exist_ok=True)
        if folder != path and (folder / "cgroup.subtree_control").exists():
            enable_v2(folder)


def try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass  # a setting this kernel lacks (swap accounting off)


@dataclass(frozen=True)
class Cgroup:
    path: Path
    oom_before: int  # the kills counted before the container started (0 but in a folder left by a failed removal)

    @classmethod
    def make(cls, name: str, limit: int, folder: Path) -> Cgroup | None:
        """The cgroup ``<node>/<name>`` with ``limit`` bytes (swap none), named in the container's ``folder``."""
        node = node_cgroup()
        if node is None:
            return None
        path = node / name
        with LOCK:
            make_folders(path)
        v1 = (path / "memory.limit_in_bytes").exists()
        (path / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(str(limit))
        try_write(path / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max"), str(limit) if v1 else "0")
        cgroup = cls(path, 0)
        cgroup = cls(path, cgroup.oom_kills())
        (folder / "cgroup").write_text(f"{path}\n{cgroup.oom_before}\n")  # scripts/cluster-down.sh reads line 1
        return cgroup

    @classmethod
    def of(cls, folder: Path) -> Cgroup | None:
        """The cgroup named in a container's ``folder``, if it has one."""
        try:
            path, before = (folder / "cgroup").read_text().split()
        except (OSError, ValueError):
            return None
        return cls(Path(path), int(before))

    def counters(self) -> dict[str, int]:
        name = "memory.oom_control" if (self.path / "memory.oom_control").exists() else "memory.events"
        try:
            pairs = (line.split() for line in (self.path / name).read_text().splitlines())
            return {key: int(value) for key, value in pairs}
        except (OSError, ValueError):
            return {}

    def oom_kills(self) -> int:
        return self.counters().get("oom_kill", 0)

    def oom_killed(self) -> bool:
        return self.oom_kills() > self.oom_before

    def number(self, *names: str) -> int | None:
        """The first of these files (v1's name, v2's) that holds a number."""
        for name in names:
            try:
                return int((self.path / name).read_text())
            except (OSError, ValueError):
                continue
        return None

    def processes(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Once the container is gone: what it left inside is killed (its main process has ended, as a runtime
        ends the rest with it), then the folder goes, and its pod's and the node's when they are empty."""
        peak, limit = self.number("memory.max_usage_in_bytes", "memory.peak"), self.number("memory.limit_in_bytes",
                                                                                           "memory.max")
        key = f"{self.path.parent.name}/{self.path.name}"
        if peak is not None and limit:
            log.info("container %s: memory peak %.0f MiB of its %.0f MiB limit", key, peak / 2**20, limit / 2**20)
        deadline = time.monotonic() + 10
        while self.path.exists() and time.monotonic() < deadline:
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            with LOCK:
                for folder in (self.path, self.path.parent, self.path.parent.parent):
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            time.sleep(0.05 if self.path.exists() else 0)
        if self.path.exists():
            log.warning("%s: cgroup %s not removed: processes %s", key, self.path, self.processes())
