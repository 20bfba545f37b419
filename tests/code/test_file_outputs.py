"""File outputs, unit by unit: confine_file's rules (core/paths.py), how evaluate knows its own metrics file,
and a write the filesystem refuses (an injected OSError: root writes through modes)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from mnist_job.core.errors import InvalidInput
from mnist_job.core.files import output_errors, write_atomically
from mnist_job.core.paths import FileOutput, confine_file
from mnist_job.evaluation.evaluate import METRICS_FILE, METRICS_KEYS, is_metrics_file

ANY_JSON = FileOutput("a JSON file", lambda path: path.suffix == ".json")


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "outputs").mkdir(parents=True)
    (root / "params.yaml").write_text("data: {}\n")
    return root


def test_the_metrics_keys_are_what_scoring_writes():
    import numpy as np

    from mnist_job.evaluation.scoring import Evaluation

    evaluation = Evaluation(0.5, 1.0, [0.5] * 10, np.zeros((10, 10), dtype=np.int64), 10)
    assert set(evaluation.to_json()) == METRICS_KEYS


@pytest.mark.parametrize(("text", "ours"), [
    (json.dumps({key: 0 for key in METRICS_KEYS}), True),
    ('{"test_accuracy": 0.9, "test_loss": 0.3}', True),  # an older release's file, fewer keys
    ('{"test_accuracy": 0.9, "learning_rate": 0.1}', False),  # someone else's key
    ('{"accuracy": 0.9}', False),
    ('[{"test_accuracy": 0.9}]', False),
    ("data:\n  dir: data/mnist\n", False),
    ("", False),
])
def test_only_evaluates_own_metrics_file_may_be_replaced(tmp_path, text, ours):
    (tmp_path / "m.json").write_text(text)
    assert is_metrics_file(tmp_path / "m.json") is ours


def test_a_folder_is_not_a_metrics_file(tmp_path):
    assert not is_metrics_file(tmp_path)


def test_the_project_files_are_refused_without_git(project, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git at all: the named files are still the project's
    for value in ("params.yaml", "dvc.lock", "data/mnist.dvc"):
        with pytest.raises(InvalidInput, match="--metrics"):
            confine_file(value, "--metrics", project, ANY_JSON)
    assert confine_file("outputs/m.json", "--metrics", project, ANY_JSON) == project.resolve() / "outputs" / "m.json"


def test_an_absolute_file_in_an_allowed_folder_passes(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    assert confine_file(elsewhere / "m.json", "--metrics", project, METRICS_FILE) == elsewhere.resolve() / "m.json"


def test_a_file_in_a_folder_that_holds_the_project_is_refused(project):
    with pytest.raises(InvalidInput, match="holds the project"):
        confine_file(project.parent / "m.json", "--metrics", project, METRICS_FILE)


def test_a_refused_write_is_one_line_naming_the_file_and_the_reason(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old\n")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), src)  # names the temporary file

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InvalidInput) as caught, output_errors("--metrics", target):
        write_atomically(target, "new\n")
    assert str(caught.value) == f"invalid input: --metrics: cannot write {target}: Permission denied"
    assert caught.value.exit_code == 2
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no half file"


def test_a_read_only_file_system_is_one_line(tmp_path):
    with pytest.raises(InvalidInput, match=r"--plots: cannot write /ro/plots: Read-only file system"), \
            output_errors("--plots", Path("/ro/plots")):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/plots")
