"""`mnist-job evaluate --metrics FILE` as a new user would try it: a file output is confined like a folder.

A real subprocess on a copy of the project that is a git checkout (params.yaml, dvc.lock and a note tracked),
with a tiny untrained checkpoint (scoring 200 images takes a second). Every refused path ends in one
``error:`` line, exit 2, and the copy unchanged byte for byte; the metrics file evaluate wrote may be written
again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loopback import services
from tests.data.test_hostile_paths import snapshot


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    import torch

    from mnist_job.model.network import build_model

    root = tmp_path_factory.mktemp("file-outputs") / "project"
    for rel in ("dvc.yaml", "dvc.lock", "params.yaml", "pyproject.toml", ".dvc/config"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(services.PROJECT_DIR / rel, root / rel)
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("the user's own file\n")
    (root / "notes" / "other.json").write_text('{"accuracy": 0.5}\n')
    (root / "notes" / "tracked.json").write_text('{"notes": 1}\n')  # a file of the project's that git tracks
    (root / "notes" / "committed-metrics.json").write_text('{"test_accuracy": 0.5}\n')  # a DVC user's commit
    (root / "notes" / "link.json").symlink_to("../params.yaml")
    (root / "outputs" / "model").mkdir(parents=True)
    (root / "outputs" / "plots").mkdir()  # as after a first run: evaluate makes both folders before writing
    torch.save({"model_params": {"width": 8, "dropout": 0.1}, "model": build_model(8, 0.1).state_dict()},
               root / "outputs" / "model" / "checkpoint.pt")
    if shutil.which("git"):
        git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "params.yaml", "dvc.yaml", "dvc.lock", "pyproject.toml", "notes/tracked.json",
                        "notes/committed-metrics.json"],
                       check=True)
        subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (root.parent / "home").mkdir()
    return root


def evaluate(project: Path, prepared_dataset: Path, *args: str, prefix: tuple[str, ...] = ()):
    env = services.base_env(MNIST_PROJECT_DIR=str(project), HOME=str(project.parent / "home"),
                            MLFLOW_TRACKING_URI=f"sqlite:///{project.parent / 'mlflow.db'}",
                            PYTHONPATH=str(services.PROJECT_DIR))  # this checkout's code, whatever the venv installed
    return subprocess.run([*prefix, sys.executable, "-m", "mnist_job", "evaluate", "--set", "data.test_subset=200",
                           "--set", f"data.dir={prepared_dataset}", *args],
                          capture_output=True, text=True, env=env, cwd=project, timeout=300)


def assert_one_error_line(done, *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.parametrize(("value", "why"), [
    ("params.yaml", "the project's params.yaml"),
    ("dvc.lock", "the project's dvc.lock"),
    ("data/mnist.dvc", "DVC"),
    (".git/metrics.json", ".git"),
    ("metrics.json", "top folder"),
    ("/x.json", "system folder"),
    ("<home>/metrics.json", "home folder"),
    ("~/metrics.json", "home folder"),
    ("notes/mine.txt", "not a metrics file"),
    ("notes/other.json", "not a metrics file"),
    ("notes/link.json", "a link"),
    ("notes/tracked.json", "git tracks"),
    ("outputs/model", "a folder"),
])
def test_a_file_output_that_is_not_ours_to_write_is_refused(project, prepared_dataset, value, why):
    if why == "git tracks" and not (project / ".git").is_dir():
        pytest.skip("no git here: the copy is not a checkout")
    before = snapshot(project)
    home_before = snapshot(project.parent / "home")
    done = evaluate(project, prepared_dataset, "--metrics", value.replace("<home>", str(project.parent / "home")))
    assert_one_error_line(done, "--metrics", why)
    assert snapshot(project) == before and snapshot(project.parent / "home") == home_before
    if value == "/x.json":
        assert not Path("/x.json").exists()


def test_two_outputs_at_one_path_are_refused(project, prepared_dataset):
    before = snapshot(project)
    done = evaluate(project, prepared_dataset, "--metrics", "outputs/new", "--plots", "outputs/new")
    assert_one_error_line(done, "--plots", "each output its own path")
    assert snapshot(project) == before


def test_a_file_where_a_folder_should_be_is_one_error_line(project, prepared_dataset):
    before = snapshot(project)
    done = evaluate(project, prepared_dataset, "--metrics", "notes/mine.txt/metrics.json")
    assert_one_error_line(done, "--metrics", "notes/mine.txt is not a folder")
    assert snapshot(project) == before


def read_only_prefix(folder: Path) -> tuple[str, ...]:
    """How to run a command that sees ``folder`` read-only: its mode for a user, a read-only bind in a private
    mount namespace for root (root writes through modes)."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return ()
    prefix = ("unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder))
    probe = subprocess.run([*prefix, "sh", "-c", f"! touch {folder}/probe 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root (modes do not stop root) and no mount namespace to bind the folder read-only: "
                    "tests/code/test_file_outputs.py covers the same error with an injected OSError")
    return prefix


def test_a_read_only_folder_is_one_error_line_and_no_file(project, prepared_dataset):
    folder = project / "readonly"
    folder.mkdir()
    try:
        prefix = read_only_prefix(folder)
        before = snapshot(project)
        done = evaluate(project, prepared_dataset, "--metrics", "readonly/metrics.json", prefix=prefix)
        assert_one_error_line(done, "--metrics", str(folder / "metrics.json"))
        assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr
        assert snapshot(project) == before and not list(folder.iterdir())
    finally:
        folder.chmod(0o755)
        folder.rmdir()


def test_the_metrics_file_evaluate_wrote_is_written_again(project, prepared_dataset):
    import json

    from mnist_job.evaluation.evaluate import is_metrics_file

    metrics = project / "outputs" / "metrics.json"
    for _ in range(2):
        done = evaluate(project, prepared_dataset, "--metrics", "outputs/metrics.json")
        assert done.returncode == 0, done.stderr
        assert is_metrics_file(metrics) and json.loads(metrics.read_text())["test_images"] == 200
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["metrics.json", "model", "plots"], "no stray temp file"


def test_a_metrics_file_git_tracks_is_written_again(project, prepared_dataset):
    """DVC pipelines commit their metrics files (dvc.yaml: `cache: false`): evaluate's own file, tracked or not."""
    if not (project / ".git").is_dir():
        pytest.skip("no git here: the copy is not a checkout")
    done = evaluate(project, prepared_dataset, "--metrics", "notes/committed-metrics.json")
    assert done.returncode == 0, done.stderr
