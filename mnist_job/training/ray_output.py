"""Ray's log stream on the driver: every line into the run's log file, only the job's lines on the terminal.

Ray forwards whatever its workers and actors print to the driver (``log_to_driver``), where one handler
prints all of it with a "(RayTrainWorker pid=N)" prefix: Ray Train's report dictionaries, checkpoint
paths, its controller's and the C++ core's warnings, and every rank's copy of each epoch line. From a
run's start, ``route_ray_output`` puts a handler of its own in that place: every line goes to the log
file with its origin; the terminal shows what ``shown_text`` in mnist_job/core/console.py lets through
(rank 0's lines, every rank's data lines, the other ranks' warnings), and a progress bar on a terminal.
With ``verbose`` Ray's handler stays and the file gets a copy.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from mnist_job.core.console import PROGRESS, PROGRESS_LINE, WORKER_LINE, ProgressBar, shown_text

logger = logging.getLogger(__name__)
RAY_HANDLER = "ray_print_logs"  # the name ray._private.worker registers its printing handler under
OUR_HANDLER = "mnist_job_log_lines"


def origin(batch: dict) -> str:
    name = batch.get("actor_name") or batch.get("task_name") or ""
    return f"({name} pid={batch.get('pid')}{', ip=' + batch['ip'] if batch.get('ip') else ''})".replace("( ", "(")


class JobLines:
    """Takes Ray's batches of forwarded lines (a dict per process and stream) and routes each line."""

    def __init__(self, log_file: Path, show: bool, progress: bool, stdout=None) -> None:
        self.file = log_file.open("a", encoding="utf-8")
        self.show, self.progress = show, progress
        self.stdout = stdout or sys.stdout
        self.bar = ProgressBar(self.stdout)
        self.lock = threading.Lock()

    def __call__(self, batch: dict) -> None:
        with self.lock:
            for line in batch.get("lines", []):
                self.route(batch, line)
            self.file.flush()

    def route(self, batch: dict, line: str) -> None:
        match = WORKER_LINE.match(line)
        message = match.group(2) if match else ""
        if match and message.startswith(PROGRESS):
            position = PROGRESS_LINE.match(message.removeprefix(PROGRESS))
            if position and self.show and self.progress:
                self.bar.draw(*map(int, position.groups()))
            return  # progress is for a person watching, not for the record
        self.file.write(f"{origin(batch)} {line}\n")
        text = shown_text(int(match.group(1)), message) if self.show and match else None
        if text is not None:
            self.bar.clear()
            print(text, file=self.stdout, flush=True)

    def close(self) -> None:
        with self.lock:
            self.bar.clear()
            self.file.close()


def route_ray_output(log_file: Path, verbose: bool, progress: bool) -> JobLines | None:
    """Route Ray's forwarded worker output from now on (see the module docstring); returns the router.

    The router stays in place after the run: Ray delivers a worker's last lines late, after the trainer
    returned, and those belong in the file too. A later call replaces it. If this Ray has no forwarding
    handler (``log_to_driver=False``, or a Ray whose internals moved), lines stay as Ray prints them.
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover (a Ray without the dispatcher)
        return None
    with dispatcher._lock:
        names = {name: handler for name, handler in dispatcher.handlers}
    if RAY_HANDLER not in names and OUR_HANDLER not in names:
        logger.debug("ray: no log forwarding handler to replace; Ray prints worker output itself")
        return None
    lines = JobLines(log_file, show=not verbose, progress=progress)
    dispatcher.remove_handler(OUR_HANDLER)
    if not verbose:
        dispatcher.remove_handler(RAY_HANDLER)
    dispatcher.add_handler(OUR_HANDLER, lines)
    if isinstance(names.get(OUR_HANDLER), JobLines):
        names[OUR_HANDLER].close()
    return lines
