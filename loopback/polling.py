"""The one way tests wait for something: poll until it holds, with a deadline and a clear failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float, failure: str | Callable[[], str], interval: float = 0.2) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds raise TimeoutError with ``failure`` (a callable is called then, so the
    message can show the last state seen). ``probe`` raises to give up early, e.g. when the process
    it waits on has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(failure() if callable(failure) else failure)
        time.sleep(interval)
