"""What reaches the terminal and what the run's log file keeps (mnist_job/core/console.py,
mnist_job/training/ray_output.py), fed with Ray's forwarded-line batches as its log monitor sends them."""

from __future__ import annotations

import io
import logging
import sys
import warnings

from mnist_job.core.console import chatter_to_file, show_on_stdout, stderr_to_file
from mnist_job.training.ray_output import JobLines


def batch(pid: int, *lines: str, actor: str = "RayTrainWorker") -> dict:
    return {"pid": pid, "ip": "127.0.0.1", "actor_name": actor, "is_err": False, "lines": list(lines)}


RAY_CHATTER = [
    batch(11, "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'epoch': 1})"),
    batch(12, "Requesting resources: {'CPU': 1} * 2", actor="TrainController"),
    batch(12, "[2026-11-26 E 1 2] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher'",
          actor="TrainController"),
    batch(10, "/site-packages/torch/export/_package.py:415: UserWarning: No complete tensor found"),
]
JOB = [
    batch(10, "[rank 0] data ready in 0.3 s: 1000 train / 5000 validation images"),
    batch(11, "[rank 1] data ready in 0.3 s: 1000 train / 5000 validation images"),
    batch(10, "[rank 0] data: pulled data/mnist from s3://dvc/x into /cache in 1.1 s"),
    batch(11, "[rank 1] data: pulled data/mnist from s3://dvc/x into /cache in 1.2 s"),
    batch(10, "[rank 0] progress: epoch 1/2 5/10"),
    batch(10, "[rank 0] epoch 1/2 train_loss=0.5 val_acc=0.9"),
    batch(11, "[rank 1] epoch 1/2 train_loss=0.5 val_acc=0.9"),
    batch(11, "[rank 1] warning: mlflow: server unreachable (ConnectionError)"),
]


def route(tmp_path, show: bool, progress: bool) -> tuple[str, str]:
    terminal = io.StringIO()
    lines = JobLines(tmp_path / "train.log", show=show, progress=progress, stdout=terminal)
    for b in [*RAY_CHATTER, *JOB]:
        lines(b)
    lines.close()
    return terminal.getvalue(), (tmp_path / "train.log").read_text()


def test_the_terminal_gets_rank_0_every_ranks_data_lines_and_the_others_warnings(tmp_path):
    terminal, log = route(tmp_path, show=True, progress=False)
    assert terminal.splitlines() == [
        "data ready in 0.3 s: 1000 train / 5000 validation images",
        "[rank 0] data: pulled data/mnist from s3://dvc/x into /cache in 1.1 s",
        "[rank 1] data: pulled data/mnist from s3://dvc/x into /cache in 1.2 s",
        "epoch 1/2 train_loss=0.5 val_acc=0.9",
        "[rank 1] warning: mlflow: server unreachable (ConnectionError)",
    ]
    for b in [*RAY_CHATTER, *JOB]:  # the file keeps every line but progress, with where it came from
        for line in b["lines"]:
            if "progress:" not in line:
                assert f"({b['actor_name']} pid={b['pid']}, ip=127.0.0.1) {line}\n" in log
    assert "progress:" not in log


def test_a_terminal_gets_a_progress_bar_cleared_before_the_next_line(tmp_path):
    terminal, _ = route(tmp_path, show=True, progress=True)
    assert "\r\x1b[Kepoch 1/2 [" in terminal and "] 5/10" in terminal
    before, after = terminal.split("] 5/10", 1)
    assert after.startswith("\r\x1b[Kepoch 1/2 train_loss=0.5")  # cleared, then the epoch line


def test_verbose_leaves_the_terminal_to_ray_and_still_writes_the_file(tmp_path):
    terminal, log = route(tmp_path, show=False, progress=True)
    assert terminal == ""
    assert "[rank 1] epoch 1/2" in log and "TrainingReport" in log


def test_workers_mark_their_lines_with_rank_and_level(capsys):
    show_on_stdout(rank=3)
    try:
        logger = logging.getLogger("mnist_job.test")
        logger.info("epoch 1/2")
        logger.warning("mlflow: server unreachable")
        logger.debug("not shown")
    finally:
        show_on_stdout()
    assert capsys.readouterr().out.splitlines() == ["[rank 3] epoch 1/2", "[rank 3] warning: mlflow: server unreachable"]


def test_library_chatter_and_warnings_go_to_the_file_and_logging_is_restored(tmp_path, capsys):
    chatty = logging.getLogger("ray")
    before = (list(chatty.handlers), chatty.propagate)
    stream = logging.StreamHandler(sys.stderr)
    chatty.addHandler(stream)
    try:
        with chatter_to_file(tmp_path / "train.log", verbose=False):
            chatty.warning("Token authentication is enabled")
            warnings.warn("dataset source can be interpreted in multiple ways", UserWarning, stacklevel=1)
            logging.getLogger("mnist_job.test").warning("the job's own line")
        assert chatty.handlers == [*before[0], stream] and chatty.propagate == before[1]
    finally:
        chatty.removeHandler(stream)
    captured = capsys.readouterr()
    assert "Token authentication" not in captured.err + captured.out
    assert "interpreted in multiple ways" not in captured.err + captured.out
    log = (tmp_path / "train.log").read_text()
    assert "WARNING ray: Token authentication is enabled" in log
    assert "UserWarning: dataset source can be interpreted in multiple ways" in log
    assert "mnist_job.test: the job's own line" in log


def test_what_a_c_library_writes_to_fd_2_goes_to_the_file(tmp_path):
    import os

    with stderr_to_file(tmp_path / "train.log"):
        os.write(2, b"network_util.cc:330: Failed to determine local IP\n")
    assert "Failed to determine local IP" in (tmp_path / "train.log").read_text()
