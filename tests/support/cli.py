"""`mnist-job` as the user runs it: a real subprocess of the venv's interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loopback.services import PROJECT_DIR, base_env


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mnist-job ARGS`, output captured; the shared test environment unless ``env`` is given."""
    return subprocess.run([sys.executable, "-m", "mnist_job", *args], capture_output=True, text=True,
                          env=env or base_env(), cwd=cwd or PROJECT_DIR, timeout=timeout)
