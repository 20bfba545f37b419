"""Peak memory of a contender's process tree as PSS (proportional set size), sampled.

PSS charges each shared page (libraries, Ray's object store, torch's code) to the processes that
map it in equal parts, so the sum over a tree is what the tree really holds, where a sum of RSS
counts every shared page once per process. Read from /proc/PID/smaps_rollup (Linux >= 4.14).
"""

from __future__ import annotations

import threading
from pathlib import Path

MB = 2**20


def pss_bytes(pid: int) -> int | None:
    """The process's PSS in bytes, or None when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def _title(proc) -> str:
    """What the process calls itself: Ray rewrites its workers' command lines to ``ray::ActorName...``."""
    try:
        return " ".join(proc.cmdline()) or proc.name()
    except Exception:  # noqa: BLE001 (psutil.Error: gone between listing and reading)
        return ""


class TreePssSampler:
    """Peak summed PSS of a process and all its descendants, every ``interval`` seconds.

    Also the peak PSS of any single process whose command line contains ``marker`` (for the Ray
    job: a training worker, ``ray::RayTrainWorker``), and the largest processes at the tree's peak.
    """

    def __init__(self, pid: int, interval: float = 0.5, marker: str = "RayTrainWorker"):
        self.pid, self.interval, self.marker = pid, interval, marker
        self.peak_bytes = 0
        self.peak_processes = 0
        self.peak_marked_bytes = 0
        self.at_peak: list[tuple[str, float]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total, sizes = 0, []
        for p in procs:
            pss = pss_bytes(p.pid)
            if pss is None:
                continue
            title = _title(p)
            total += pss
            sizes.append((title[:80], pss / MB))
            if self.marker and self.marker in title:
                self.peak_marked_bytes = max(self.peak_marked_bytes, pss)
        self.samples += 1
        if total > self.peak_bytes:
            self.peak_bytes, self.peak_processes = total, len(sizes)
            self.at_peak = sorted(sizes, key=lambda s: -s[1])[:8]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def figures(self) -> dict:
        return {"pss_peak_mb": self.peak_bytes / MB, "pss_processes_at_peak": self.peak_processes,
                "pss_worker_peak_mb": self.peak_marked_bytes / MB if self.peak_marked_bytes else None,
                "pss_largest_at_peak": [[t, round(mb, 1)] for t, mb in self.at_peak], "pss_samples": self.samples}
