"""What the job prints: the package's log records, one plain line each; everything else to a log file.

Every module logs to ``logging.getLogger(__name__)`` (all below the ``mnist_job`` logger); the CLI
calls ``show_on_stdout`` once, and each Ray Train worker calls ``show_on_stdout(rank=N)``, which
writes ``[rank N] message`` lines (``[rank N] warning: message`` from WARNING up). The driver reads
those lines back from Ray's log stream (mnist_job/training/ray_output.py) and shows rank 0's, and the
other ranks' warnings and every rank's data lines (``shown_text``); the libraries' own chatter (Ray, MLflow, Python
warnings) goes to the run's log file unless ``--verbose`` asks for it on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
from pathlib import Path

PACKAGE_LOGGER = "mnist_job"
# A worker's line as the driver sees it once Ray has stripped its "(RayTrainWorker pid=N)" prefix.
WORKER_LINE = re.compile(r"^\[rank (\d+)\] (.*)$")
PROGRESS = "progress: "  # a worker's progress update: "[rank 0] progress: epoch 2/5 40/117"
PROGRESS_LINE = re.compile(r"^epoch (\d+)/(\d+) (\d+)/(\d+)$")
# Libraries whose log records are chatter for a person at the terminal: the run's log file gets them.
CHATTY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings", "urllib3", "botocore", "filelock")


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


class _WorkerFormatter(logging.Formatter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}] "

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return self.prefix + level + record.getMessage()


def show_on_stdout(rank: int | None = None, verbose: bool = False) -> None:
    """Route the package's records to stdout (again: a reused worker process gets one handler, not two)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _CurrentStdout)]:
        logger.removeHandler(handler)
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("%(message)s") if rank is None else _WorkerFormatter(rank))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    # A Ray worker's root logger has Ray's own handler, which would print every line a second time.
    logger.propagate = rank is None


def report_progress(epoch: int, epochs: int, step: int, steps: int) -> None:
    """A worker's place within an epoch; the driver draws it as a bar on a terminal and drops it elsewhere."""
    # not print(): Ray Train replaces it in workers with one that also logs the line, so it would come twice
    sys.stdout.write(f"[rank 0] {PROGRESS}epoch {epoch}/{epochs} {step}/{steps}\n")
    sys.stdout.flush()


def shown_text(rank: int, message: str) -> str | None:
    """How a worker's line appears without --verbose, or None: rank 0's lines as they are; from every rank,
    its data lines (each node pulls its own copy, so each says something) and, from the others, warnings,
    both with their rank."""
    if message.startswith("data: ") or (rank != 0 and message.startswith(("warning: ", "error: ", "critical: "))):
        return f"[rank {rank}] {message}"
    return message if rank == 0 else None


class ProgressBar:
    """One line redrawn in place (a terminal only); a printed line first clears it."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.drawn = False

    def draw(self, epoch: int, epochs: int, step: int, steps: int) -> None:
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 30))
        filled = width * step // max(steps, 1)
        self.stream.write(f"\r\x1b[Kepoch {epoch}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {step}/{steps}")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


@contextlib.contextmanager
def chatter_to_file(log_file: Path, verbose: bool):
    """The libraries' log records and Python warnings go to ``log_file`` (also to the terminal with --verbose).

    Restores the loggers it changed on the way out, so a caller in the same process (the benchmark,
    the tests) gets its logging back as it was.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    saved, opened = [], []
    # the package's records too: the file tells the whole story. One handler per logger, since
    # ray.init() sets its own format on every handler of the "ray" logger.
    for name in (*CHATTY_LOGGERS, PACKAGE_LOGGER):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        if not verbose and name != PACKAGE_LOGGER:
            for handler in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
                            and not isinstance(h, logging.FileHandler)]:
                logger.removeHandler(handler)
            logger.propagate = False
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(formatter)
        logger.addHandler(to_file)
        opened.append(to_file)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
        for handler in opened:
            handler.close()


def to_log_file_only(logger: logging.Logger, message: str) -> None:
    """``message`` as an INFO record of ``logger`` in the run's log file (``chatter_to_file``'s), not on the terminal:
    for a line the terminal gets another way (the driver's summary)."""
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, None, None)
    for handler in logging.getLogger(PACKAGE_LOGGER).handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextlib.contextmanager
def stderr_to_file(log_file: Path, enabled: bool = True):
    """File descriptor 2 into ``log_file`` for a while: for libraries whose C++ core writes there directly."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with log_file.open("ab") as target:
        os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
