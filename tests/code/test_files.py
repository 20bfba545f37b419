"""Files a later run reads are replaced whole: a failed write leaves the old content and no stray file."""

from __future__ import annotations

import pytest

from mnist_job.core.files import write_atomically


def test_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "out" / "run.json"
    write_atomically(target, '{"old": 1}\n')
    write_atomically(target, b'{"new": 2}\n')
    assert target.read_text() == '{"new": 2}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mnist_job.core.files.os.fsync", full_disk)  # the data is written, then the flush fails
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "the temporary file is removed"
