"""The ``mnist-job`` executable's exit (mnist_job/cli/commands.py ``console_main``): the command's exit code,
everything it printed, the exit handlers run; only Python's teardown is skipped, and not while a thread works."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from loopback.services import PROJECT_DIR, base_env


def run_console(tmp_path, argv: list[str], before: str = "") -> subprocess.CompletedProcess:
    """``console_main`` in a fresh interpreter with ``argv``; ``before``: code run first (an exit handler, a thread)."""
    program = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        marker = Path({str(tmp_path / "handler-ran")!r})
        atexit.register(marker.write_text, "yes")
        {before}
        sys.argv = ["mnist-job", *{argv!r}]
        from mnist_job.cli import console_main
        console_main()
        print("not reached: console_main exits")
    """)
    return subprocess.run([sys.executable, "-c", program], cwd=PROJECT_DIR, env=base_env(), capture_output=True,
                          text=True, timeout=60)


def test_a_command_exits_with_its_code_its_output_flushed_and_the_exit_handlers_run(tmp_path):
    done = run_console(tmp_path, ["presets"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fast" in done.stdout and "not reached" not in done.stdout  # buffered output reached the pipe
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_a_refused_command_keeps_its_exit_code_and_its_error_line(tmp_path):
    done = run_console(tmp_path, ["train", "--set", "train.epochs=0"])
    assert done.returncode == 2, done.stderr[-2000:]
    assert "train.epochs" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_a_thread_still_at_work_gets_the_usual_exit_which_waits_for_it(tmp_path):
    worker = ("threading.Thread(target=lambda: (time.sleep(1), Path("
              f"{str(tmp_path / 'thread-done')!r}).write_text('done'))).start()")
    done = run_console(tmp_path, ["presets"], before=worker)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "thread-done").read_text() == "done", "the exit did not wait for the thread"
    assert (tmp_path / "handler-ran").read_text() == "yes"
