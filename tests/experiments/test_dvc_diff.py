"""`dvc metrics diff` and `dvc params diff` on the pipeline's own dvc.yaml and params.yaml (real dvc, real git).

dvc.yaml declares the metrics files (outputs/run.json, outputs/metrics.json, not cached: git keeps them)
and each stage's params; a commit of one pipeline run against a changed workspace is what the two
commands compare.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from loopback.services import PROJECT_DIR, VENV_BIN, base_env


def _run(*cmd: str, cwd) -> str:
    env = base_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@localhost", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@localhost")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
    return done.stdout


def _write_metrics(repo, accuracy: float, fit_s: float) -> None:
    (repo / "outputs" / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy, "test_loss": 1 - accuracy}))
    (repo / "outputs" / "run.json").write_text(json.dumps({"run_id": "r", "test_accuracy": accuracy, "fit_wall_s": fit_s}))


def test_metrics_and_params_diff_show_what_changed_since_the_last_commit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _run("git", "init", "-q", cwd=repo)
    _run(str(VENV_BIN / "dvc"), "init", "-q", cwd=repo)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT_DIR / name, repo / name)
    (repo / "outputs").mkdir()
    _write_metrics(repo, 0.97, 60.0)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", "baseline run", cwd=repo)

    params = (repo / "params.yaml").read_text()
    assert "  learning_rate: 0.004" in params
    (repo / "params.yaml").write_text(params.replace("  learning_rate: 0.004", "  learning_rate: 0.002"))
    _write_metrics(repo, 0.98, 50.0)

    metrics = json.loads(_run(str(VENV_BIN / "dvc"), "metrics", "diff", "--json", cwd=repo))
    assert metrics["outputs/metrics.json"]["test_accuracy"]["old"] == 0.97
    assert metrics["outputs/metrics.json"]["test_accuracy"]["new"] == 0.98
    assert metrics["outputs/run.json"]["fit_wall_s"] == {"old": 60.0, "new": 50.0, "diff": -10.0}
    changed = json.loads(_run(str(VENV_BIN / "dvc"), "params", "diff", "--json", cwd=repo))
    assert changed == {"params.yaml": {"train.learning_rate": {"old": 0.004, "new": 0.002, "diff": -0.002}}}
