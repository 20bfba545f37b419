"""What the job prints: the package's log records, one plain line each, on standard output.

Every module logs to ``logging.getLogger(__name__)`` (all below the ``mnist_job`` logger); the CLI
calls ``show_on_stdout`` once, and each Ray Train worker calls ``show_on_stdout(rank=N)``, which
prefixes its lines with ``[rank N]`` so the driver's terminal (and a pod's log) tells the workers apart.
"""

from __future__ import annotations

import logging
import sys

PACKAGE_LOGGER = "mnist_job"


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time: Ray's workers replace it after start-up."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def show_on_stdout(rank: int | None = None, verbose: bool = False) -> None:
    """Route the package's records to stdout (again: a reused worker process gets one handler, not two)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _CurrentStdout)]:
        logger.removeHandler(handler)
    handler = _CurrentStdout()
    prefix = "" if rank is None else f"[rank {rank}] "
    handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    # A Ray worker's root logger has Ray's own handler, which would print every line a second time.
    logger.propagate = rank is None
