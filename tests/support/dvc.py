"""DVC for tests: a copy of the project's DVC metadata, and the prepared dataset pushed to an S3 remote
with the real `dvc push`, without touching the repo's config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from loopback.services import PROJECT_DIR, VENV_BIN, base_env


def push_dataset(workdir: Path, remote_url: str, s3_env: dict[str, str], data_dir: str = "data/mnist") -> str:
    """`dvc push <data_dir>` to ``remote_url`` from a scratch DVC workspace that borrows the repo's cache.

    Returns dvc's output. The repo's .dvc/config and config.local stay untouched.
    """
    from mnist_job.data.dvc_store import write_pull_workspace

    workdir.mkdir(parents=True, exist_ok=True)
    write_pull_workspace(PROJECT_DIR, workdir, data_dir, remote_url, s3_env["AWS_ENDPOINT_URL"],
                         PROJECT_DIR / ".dvc" / "cache")
    done = subprocess.run([str(VENV_BIN / "dvc"), "push", f"{data_dir}.dvc"], cwd=workdir, capture_output=True,
                          text=True, env=base_env(**s3_env), timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"dvc push failed: {done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def copy_dvc_project(destination: Path) -> Path:
    """What the image ships of DVC (metadata, params) in a fresh folder, without the data."""
    for rel in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", ".dvcignore"):
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_DIR / rel, target)
    return destination
