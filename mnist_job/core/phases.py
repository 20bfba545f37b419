"""Where a run's time went: its phases, timed where they run, one line for a person, ``phase_<name>_s`` for MLflow.

The driver (mnist_job/training/driver.py) times its phase functions: checks, Ray start, run start, fit,
outputs, shutdown. Rank 0 (mnist_job/training/loop.py) times what happens inside fit: the worker group's
start (from the moment the driver handed over its plan), its data, its model, each epoch, the checkpoints,
the final evaluation, plots, MLflow logging, export and registration, and logs them with the run's final
results (mnist_job/tracking/registry.py); the driver reads them back, prints the whole breakdown in its
summary, writes it to train.log and logs its own phases.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

PREFIX, SUFFIX = "phase_", "_s"
# The phases in the order a run goes through them (driver's, then those rank 0 times inside fit); a
# phase timed more than once (each epoch) is one name with a step per occurrence.
DRIVER_PHASES = ("checks", "ray_start", "run_start", "fit", "outputs", "shutdown")
WORKER_PHASES = ("workers_ready", "data_ready", "model_ready", "epoch", "checkpoint", "evaluate", "plots",
                 "mlflow_logging", "export", "register")
LISTED_STEPS = 5  # a phase with more occurrences (epochs) is shown as one total


def metric_key(name: str) -> str:
    return f"{PREFIX}{name}{SUFFIX}"


class PhaseClock:
    """Seconds per phase, in the order the phases were first timed; repeats of a (name, step) add up."""

    def __init__(self) -> None:
        self._seconds: dict[tuple[str, int], float] = {}

    @contextmanager
    def phase(self, name: str, step: int = 0) -> Iterator[None]:
        """Time the block as ``name`` (``step``: which occurrence of a repeated phase, e.g. the epoch)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started, step)

    def add(self, name: str, seconds: float, step: int = 0) -> None:
        self._seconds[(name, step)] = self._seconds.get((name, step), 0.0) + seconds

    def seconds(self, name: str | None = None) -> float:
        """One phase's seconds over all its steps; without a name, every phase's."""
        return sum(s for (n, _), s in self._seconds.items() if name is None or n == name)

    def metrics(self) -> list[tuple[str, float, int]]:
        """(``phase_<name>_s``, seconds, step) for each timed phase, for MLflow."""
        return [(metric_key(name), round(seconds, 3), step) for (name, step), seconds in self._seconds.items()]

    @classmethod
    def from_metrics(cls, entries: Iterable[tuple[str, float, int]], order: tuple[str, ...] = ()) -> PhaseClock:
        """A clock from (key, value, step) as MLflow returns them: the ``phase_*_s`` keys, in ``order``."""
        timed = {(key[len(PREFIX):-len(SUFFIX)], step): value for key, value, step in entries
                 if key.startswith(PREFIX) and key.endswith(SUFFIX)}
        rank = {name: i for i, name in enumerate(order)}
        clock = cls()
        for name, step in sorted(timed, key=lambda item: (rank.get(item[0], len(order)), item[0], item[1])):
            clock.add(name, timed[(name, step)], step)
        return clock

    def describe(self, inside: dict[str, PhaseClock] | None = None) -> str:
        """``checks 0.4 s, fit 60.2 s (epoch 1 27.1 s, ..., other 0.9 s), ...``: ``inside`` names the phases
        another clock split (the driver's fit: rank 0's clock), shown in brackets with what it left over."""
        parts = []
        for name in dict.fromkeys(n for n, _ in self._seconds):
            steps = {step: s for (n, step), s in self._seconds.items() if n == name}
            text = _describe_phase(name, steps)
            nested = (inside or {}).get(name)
            if nested and nested._seconds:
                rest = self.seconds(name) - nested.seconds()
                text += f" ({nested.describe()}{f', other {rest:.1f} s' if rest >= 0.05 else ''})"
            parts.append(text)
        return ", ".join(parts)


def _describe_phase(name: str, steps: dict[int, float]) -> str:
    label = name.replace("_", " ")
    if set(steps) == {0}:
        return f"{label} {steps[0]:.1f} s"
    if len(steps) <= LISTED_STEPS:
        return ", ".join(f"{label} {step} {seconds:.1f} s" for step, seconds in sorted(steps.items()))
    total = sum(steps.values())
    return f"{label}s {min(steps)}-{max(steps)} {total:.1f} s ({total / len(steps):.1f} s each)"
