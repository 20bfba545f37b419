"""project.env, the environment the Makefile, the scripts and the tests share (telemetry off,
namespace and release names), as a dict. Parsed here rather than taken from os.environ so a
test run by plain `pytest` (not through make) sees the same values."""

from __future__ import annotations

from pathlib import Path

PROJECT_ENV_FILE = Path(__file__).resolve().parents[1] / "project.env"


def read_project_env(path: Path = PROJECT_ENV_FILE) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier() or not key.isupper():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line: {line!r}")
        values[key] = value
    return values


PROJECT_ENV = read_project_env()
