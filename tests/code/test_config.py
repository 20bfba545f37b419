"""Params and settings: defaults, overrides, and a battery of bad input (exit 2, field named, no traceback)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mnist_job import cli
from mnist_job.core.config import Params, Runtime, load_params
from mnist_job.core.errors import InvalidInput
from tests.support.cli import run_cli


def test_params_yaml_is_exactly_the_typed_defaults(project_dir):
    """params.yaml documents the defaults; the two cannot drift apart."""
    from_file = load_params(project_dir / "params.yaml")
    assert from_file == Params()


def test_set_and_flags_override_in_order(project_dir):
    params = load_params(project_dir / "params.yaml", ["train.epochs=3", "model.dropout=0.2"], {"train.epochs": 7})
    assert params.train.epochs == 7  # flags win over --set
    assert params.model.dropout == 0.2
    assert params.train.batch_size == 256


def test_use_gpu_accepts_yaml_booleans():
    assert load_params(None, ["train.use_gpu=true"]).train.use_gpu == "true"
    assert load_params(None, ["train.use_gpu=false"]).train.use_gpu == "false"


def test_flat_keys_round_trip_through_set():
    params = Params()
    overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in params.flat().items()]
    overrides = [o.removesuffix("\n...") for o in overrides]
    assert load_params(None, overrides) == params


# Each case: (--set overrides, text that must appear in the message).
BAD_INPUTS = [
    (["train.epochs=0"], "train.epochs"),
    (["train.epochs=-3"], "train.epochs"),
    (["train.epochs=abc"], "train.epochs"),
    (["train.epochs=2.5"], "train.epochs"),
    (["train.epochs=100000000"], "train.epochs"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.batch_size=-256"], "train.batch_size"),
    (["train.learning_rate=0"], "train.learning_rate"),
    (["train.learning_rate=-0.1"], "train.learning_rate"),
    (["train.learning_rate=1e9"], "train.learning_rate"),
    (["train.learning_rate=fast"], "train.learning_rate"),
    (["train.num_workers=0"], "train.num_workers"),
    (["train.num_workers=-1"], "train.num_workers"),
    (["train.num_workers=two"], "train.num_workers"),
    (["train.use_gpu=maybe"], "train.use_gpu"),
    (["train.epochz=3"], "train.epochz: unknown key"),
    (["trian.epochs=3"], "trian: unknown key"),
    (["data.source=ftp"], "data.source"),
    (["data.source=idx-dir"], "data.idx_dir"),
    (["data.validation_size=-1"], "data.validation_size"),
    (["data.train_subset=100", "data.validation_size=5000"], "data.train_subset"),
    (["data.mirrors=[]"], "data.mirrors"),
    (["data.mirrors=[ftp://example]"], "data.mirrors"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.width=0"], "model.width"),
    (["mlflow.experiment="], "mlflow.experiment"),
    (["mlflow.registered_model="], "mlflow.registered_model"),
    (["mlflow.register_min_accuracy=1.5"], "mlflow.register_min_accuracy"),
    (["train.storage_path="], "train.storage_path"),
    (["train.run_name=has space"], "train.run_name"),
    (["train.if_finished=overwrite"], "train.if_finished"),
    (["train.batch_size=2", "train.num_workers=4"], "train.batch_size"),
    (["train.seed=-5"], "train.seed"),
    (["train.adam_betas=[0.9, 1.0]"], "train.adam_betas"),
    (["train.adam_betas=[0.9]"], "train.adam_betas"),
    (["train.adam_betas=0.9"], "train.adam_betas"),
    (["train"], "expected key=value"),
    (["=3"], "key is empty"),
    (["train.epochs.x=3"], "train.epochs"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_named_and_exits_2(overrides, expected, capsys, monkeypatch, project_dir):
    monkeypatch.chdir(project_dir)
    args = ["train"] + [x for o in overrides for x in ("--set", o)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_every_invalid_field_is_reported_at_once(capsys, monkeypatch, project_dir):
    monkeypatch.chdir(project_dir)
    code = cli.main(["train", "--epochs", "0", "--set", "train.batch_size=-1", "--set", "model.dropout=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 problems" in err
    for field in ("train.epochs", "train.batch_size", "model.dropout"):
        assert field in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [("train: [1, 2", "not valid YAML"), ("- just\n- a list\n", "mapping of sections"), ("train:\n  epochs: 0\n", "train.epochs")],
)
def test_bad_params_file(tmp_path: Path, content, expected, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text(content)
    assert cli.main(["train", "--params", str(bad)]) == 2
    assert expected in capsys.readouterr().err


def test_missing_params_file_is_named(capsys):
    assert cli.main(["train", "--params", "/nonexistent/params.yaml"]) == 2
    assert "/nonexistent/params.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"MLFLOW_TRACKING_URI": "localhost:5000"}, "MLFLOW_TRACKING_URI"),
     ({"AWS_ENDPOINT_URL": "minio:9000"}, "AWS_ENDPOINT_URL"),
     ({"MNIST_DVC_REMOTE_URL": "relative/path"}, "MNIST_DVC_REMOTE_URL")],
)
def test_bad_environment_is_named(env, expected):
    with pytest.raises(InvalidInput) as info:
        Runtime.from_env(env)
    assert expected in str(info.value)


def test_runtime_reads_only_what_it_is_given(tmp_path):
    runtime = Runtime.from_env({"MNIST_PROJECT_DIR": str(tmp_path), "MNIST_DATA_CACHE": str(tmp_path / "c")})
    assert runtime.project_dir == tmp_path.resolve()
    assert runtime.data_cache == (tmp_path / "c").resolve()
    assert runtime.tracking_uri is None and runtime.s3_endpoint is None
    assert runtime.image is None and runtime.ray_gcs_port is None and not runtime.kube_in_cluster


def test_runtime_holds_what_the_modules_used_to_read_themselves(tmp_path):
    env = {"MNIST_PROJECT_DIR": str(tmp_path), "MNIST_IMAGE": " img:1 ", "RAY_GCS_SERVER_PORT": "6390",
           "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    runtime = Runtime.from_env(env)
    assert (runtime.image, runtime.ray_gcs_port, runtime.kube_in_cluster) == ("img:1", "6390", True)
    assert not Runtime.from_env(env | {"KUBECONFIG": "/k"}).kube_in_cluster, "a kubeconfig wins over the pod's"
    # rank 0 tags the image of its own pod (a worker image may differ from the head's)
    assert runtime.for_this_node({"MNIST_IMAGE": "worker:1"}).image == "worker:1"
    assert runtime.for_this_node({}).image == "img:1"


def test_only_config_reads_the_environment(project_dir):
    """docs/architecture.md: mnist_job/core/config.py is the only reader; others may set variables for libraries,
    hand the whole environment to a subprocess, or restore what they set (training/ray_cluster.py's _environment)."""
    reads = re.compile(r"os\.getenv\(|os\.environ\.get\(|os\.environ\[[^]]+\](?!\s*=[^=])")
    found = {str(path.relative_to(project_dir)): hits for path in (project_dir / "mnist_job").rglob("*.py")
             if (hits := reads.findall(path.read_text())) and path.name != "config.py"}
    assert found == {"mnist_job/training/ray_cluster.py": ["os.environ.get("]}


def test_real_process_exit_code_and_no_traceback():
    done = run_cli("train", "--epochs", "0", "--num-workers", "-2")
    assert done.returncode == 2
    assert "train.epochs" in done.stderr and "train.num_workers" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_unknown_flag_is_an_argparse_error_exit_2():
    done = run_cli("train", "--epocs", "3")
    assert done.returncode == 2
    assert "--epocs" in done.stderr and "Traceback" not in done.stderr


def test_train_help_documents_every_option():
    done = run_cli("train", "--help")
    assert done.returncode == 0
    for flag in ["--params", "--set", *(f"--{n.replace('_', '-')}" for n in cli.TRAIN_FLAGS)]:
        assert flag in done.stdout, flag
    assert "default:" in done.stdout


def test_importing_the_package_has_no_side_effects(tmp_path):
    """No file, folder or environment read at import time: importing in an empty folder creates nothing."""
    import subprocess
    import sys

    code = "import mnist_job.cli, mnist_job.core.config, mnist_job.training.driver, mnist_job.tracking.runs, mnist_job.data.format"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_tracking_default_is_decided_by_runtime(tmp_path):
    embedded = Runtime.from_env({"MNIST_PROJECT_DIR": str(tmp_path)}).mlflow_uri
    assert embedded == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    given = Runtime.from_env({"MNIST_PROJECT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert given.mlflow_uri == "http://mlflow:5000"
