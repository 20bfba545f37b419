"""A bounded HTTP load from the host: a few client threads, a fixed number of requests in all, each recorded with
its start, end and outcome, so a fault injected mid-load can be judged against what was in flight at that moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    start: float  # time.monotonic()
    end: float
    status: int  # HTTP status; 0 when no answer came (connection refused, reset, timed out)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def in_flight(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass
class Load:
    """``call()`` -> (status, body) repeated ``total`` times over ``threads`` threads, each call at least
    ``interval`` s after its thread's previous one started (a steady rate, not a flood of a few seconds)."""

    call: Callable[[], tuple[int, bytes]]
    total: int
    threads: int = 4
    interval: float = 0.2
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._left = self.total
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}") for i in range(self.threads)]

    def start(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def join(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), f"the load did not end in {timeout} s"
        return sorted(self.outcomes, key=lambda o: o.start)

    def done(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def _take(self) -> bool:
        with self._lock:
            self._left -= 1
            return self._left >= 0

    def _run(self) -> None:
        while self._take():
            start = time.monotonic()
            try:
                status, body = self.call()
                detail = "" if status == 200 else body[:200].decode(errors="replace")
            except Exception as exc:  # noqa: BLE001 - any failure to get an answer is an outcome to count
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            outcome = Outcome(start, time.monotonic(), status, detail)
            with self._lock:
                self.outcomes.append(outcome)
            time.sleep(max(0.0, start + self.interval - time.monotonic()))
