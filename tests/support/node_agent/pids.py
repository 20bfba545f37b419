"""Processes known by a PID file that also names the process's start time, so that a recycled PID is never taken
for them: the shims' files (shim.py) and the pod holders' (pod_state.py). Standard library only: shim.py runs
without the venv's packages. scripts/cluster-down.sh reads the same format."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat); None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def write(path, text: str) -> None:
    """Atomically: a reader sees the old file or the new one, never a part."""
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        out.write(text)
    os.replace(partial, path)


def record(path, pid: int) -> None:
    write(path, f"{pid} {start_time(pid)}\n")


def recorded_pid(path) -> int | None:
    """The PID in ``path``, alive or not."""
    try:
        with open(path) as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(path) -> int | None:
    """The PID in ``path`` while that very process lives."""
    pid = recorded_pid(path)
    try:
        with open(path) as file:
            started = file.read().split()[1]
    except (OSError, IndexError):
        return None
    return pid if pid is not None and start_time(pid) == started else None


def group_gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # a leader that is our own child would stay in its group as a zombie
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_group(pid: int, timeout: float) -> None:
    """SIGTERM to the process group led by ``pid``, SIGKILL to what is left after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while not group_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_gone(pid):
            return


@dataclass
class Group:
    """A process group this agent did not start (an adopted pod's holder), stopped by its leader's PID."""

    pid: int

    def stop(self, timeout: float = 20.0) -> None:
        stop_group(self.pid, timeout)
