"""How a fit that does not end well ends: on a signal, the run marked KILLED; on a failure, its root cause.

Used by the driver (mnist_job/training/driver.py): ``fit_or_stop`` runs ``trainer.fit()``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from mnist_job.core.errors import DataError, InvalidInput, JobError, ServiceUnavailable, Stopped

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM raise KeyboardInterrupt in the driver; yields the signals received.

    Ray's driver turns SIGTERM into a bare exit, which would leave the MLflow run RUNNING forever;
    here both signals end up in one place that marks the run KILLED and stops Ray.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # a Tune trial: its function runs in a thread
        yield received
        return

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def fit_or_stop(trainer, ray, client, run_id: str, base_name: str, log_file=None):
    """Ray Train's result; on SIGINT/SIGTERM the run marked KILLED and Ray shut down (``Stopped``), on a failure
    the run marked FAILED and its root cause raised."""
    with stop_on_signals() as received:
        try:
            return trainer.fit()
        except KeyboardInterrupt:
            signum = received[-1] if received else signal.SIGINT
            mark_killed(client, run_id, signum)
            ray.shutdown()
            raise Stopped(f"stopped by {signal.Signals(signum).name}: Ray shut down, MLflow run {run_id} marked "
                          f"KILLED; run again with train.run_name={base_name} to resume it", signum) from None
        except Exception as exc:  # noqa: BLE001 (Ray wraps worker errors; report the root cause)
            client.set_terminated(run_id, status="FAILED")
            raise root_cause(exc, log_file) from None


def mark_killed(client, run_id: str, signum: int) -> None:
    name = signal.Signals(signum).name
    try:
        client.set_tag(run_id, "run.stopped_by", f"{name} during training")
        client.set_terminated(run_id, status="KILLED")
    except Exception as exc:  # noqa: BLE001 (stopping anyway; the next attempt resumes an unfinished run)
        logger.warning(f"mlflow: could not mark run {run_id} KILLED ({type(exc).__name__}); it stays as it was")


def root_cause(exc: BaseException, log_file=None) -> Exception:
    """The JobError a worker raised, if any, so its exit code and message reach the user.

    Anything else becomes a JobError naming the log file, where the worker's traceback is.
    """
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen or current is None:
            continue
        seen.add(id(current))
        if isinstance(current, JobError):
            return current
        failures = getattr(current, "worker_failures", None)
        nested = list(failures.values()) if isinstance(failures, dict) else []
        for nxt in (current.__cause__, current.__context__, getattr(current, "cause", None), *nested):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    text = str(exc).strip().splitlines()
    for kind in (DataError, ServiceUnavailable, InvalidInput):
        for line in text:
            if kind.__name__ + ":" in line:
                return kind(line.split(kind.__name__ + ":", 1)[1].strip())
    where = f" (the workers' output is in {log_file})" if log_file else ""
    return JobError(f"training failed: {text[-1] if text else type(exc).__name__}{where}")
