"""Hostile paths against every stage: each is refused with exit 2 naming the field, and nothing is touched.

The stages run (in-process, through the CLI) on a copy of the project that holds what a real one holds:
DVC metadata, params, the raw and prepared data, a .git folder and a folder of the user's own. After every
refusal the copy must be byte-for-byte what it was.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from loopback import services
from mnist_job import cli

HOME = str(Path.home())


@pytest.fixture(scope="module")
def project(tmp_path_factory, prepared_dataset) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "project"
    for rel in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(services.PROJECT_DIR / rel, root / rel)
    shutil.copytree(prepared_dataset, root / "data" / "mnist")
    shutil.copytree(services.PROJECT_DIR / "data" / "raw", root / "data" / "raw")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("the user's own folder\n")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def case(stage: str, *args: str, field: str, env: dict | None = None):
    return pytest.param(stage, args, field, env or {}, id=f"{stage}:{' '.join(args)}{' ' + str(env) if env else ''}")


PROJECT_ABS = "<project>"  # replaced by the copy's absolute path
CASES = [
    *[case("fetch", "--set", f"data.raw_dir={v}", field="data.raw_dir")
      for v in (".", "..", "../elsewhere", "/", ".git", ".dvc/cache", "/etc", PROJECT_ABS, HOME)],
    *[case("prepare", "--set", f"data.dir={v}", field="data.dir")
      for v in (".", "..", "/", ".git", ".dvc", "/usr/lib/mnist", PROJECT_ABS, f"{PROJECT_ABS}/..", HOME, "notes",
                "data/raw")],
    *[case("train", "--set", f"train.output_dir={v}", field="train.output_dir")
      for v in (".", "..", "/", ".git/out", "/etc/out", PROJECT_ABS, HOME)],
    *[case("train", "--set", f"train.storage_path={v}", field="train.storage_path") for v in (".", "/", ".dvc")],
    *[case("evaluate", flag, v, field=flag) for flag in ("--metrics", "--plots") for v in ("/", ".git/x", "..", HOME)],
    *[case("evaluate", "--metrics", v, field="--metrics")  # a file: never the project's own, nor one it did not write
      for v in ("params.yaml", "dvc.lock", ".dvc/config", "notes/mine.txt", "/x.json", f"{HOME}/metrics.json", "notes")],
    *[case("pull-data", field="MNIST_DATA_CACHE", env={"MNIST_DATA_CACHE": v}) for v in ("/", "/etc", PROJECT_ABS, HOME)],
    case("pull-data", "--set", "data.dir=/tmp/elsewhere", field="data.dir", env={"MNIST_DATA_CACHE": "cache"}),
    *[case("tune", "--set", f"tune.storage_path={v}", field="tune.storage_path") for v in (".", "/", ".git/tune")],
    case("tune", "--set", "train.output_dir=/", field="train.output_dir"),
    *[case("compare", "--out", v, field="--out") for v in ("/", ".git/x", HOME)],
    *[case("ci-report", "--refresh", "--baseline", v, field="--baseline")
      for v in ("params.yaml", "notes/mine.txt", "/x.json")],
    *[case("serve", "--ready-file", v, field="--ready-file") for v in ("params.yaml", "notes/mine.txt", "/ready")],
    case("prepare", field="MNIST_PROJECT_DIR", env={"MNIST_PROJECT_DIR": "/"}),
    case("train", field="MNIST_PROJECT_DIR", env={"MNIST_PROJECT_DIR": "/usr"}),
]


@pytest.mark.parametrize(("stage", "args", "field", "env"), CASES)
def test_a_hostile_path_is_refused_and_nothing_changes(project, tmp_path, monkeypatch, capsys, stage, args, field, env):
    before = snapshot(project)
    monkeypatch.chdir(project)
    for key in ("MNIST_DATA_CACHE", "AWS_ENDPOINT_URL", "MNIST_DVC_REMOTE_URL", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MNIST_PROJECT_DIR", str(project))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace(PROJECT_ABS, str(project)))
    argv = [stage, *(a.replace(PROJECT_ABS, str(project)) for a in args)]

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err, err
    assert snapshot(project) == before, "the project tree changed"


@pytest.mark.parametrize("data_dir", ["/etc", "../outside", "data/../../outside"])
def test_a_pull_never_replaces_a_folder_outside_its_workspace(tmp_path, data_dir):
    """A worker whose node sets MNIST_DATA_CACHE pulls even where the driver's checks saw no cache."""
    from mnist_job.core.config import DataParams, Runtime
    from mnist_job.core.errors import InvalidInput
    from mnist_job.data.dvc_store import ensure_dataset

    runtime = Runtime(project_dir=tmp_path / "project", data_cache=tmp_path / "cache")
    with pytest.raises(InvalidInput, match="data.dir"):
        ensure_dataset(DataParams(dir=data_dir), runtime)
    assert not (tmp_path / "cache").exists(), "refused before anything was written"
