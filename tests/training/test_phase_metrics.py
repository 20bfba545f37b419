"""`mnist-job train` tells where its time went: the summary's `phases:` line, the same line in train.log, and
one `phase_<name>_s` metric per phase in the MLflow run (each epoch a step of `phase_epoch_s`).

One real, short training (local Ray, 2 workers, 2 epochs on a small subset, SQLite MLflow), as a user runs it.
No timing threshold: only that every phase is there, once, and adds up.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from loopback import services
from mnist_job.core.phases import DRIVER_PHASES, WORKER_PHASES
from tests.support.training import assert_one_value_per_epoch

pytestmark = pytest.mark.slow

EPOCHS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_dataset):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("phases")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "mnist_job", "train", "--epochs", str(EPOCHS), "--num-workers", "2",
         "--train-subset", "3000", "--test-subset", "500", "--set", "data.validation_size=500",
         "--set", "mlflow.register_min_accuracy=0.5", "--set", "mlflow.registered_model=mnist-phases-test",
         "--set", f"train.storage_path={root / 'ray'}", "--set", f"train.output_dir={root / 'outputs'}"],
        capture_output=True, text=True, cwd=root, timeout=900,
        env=services.base_env(MLFLOW_TRACKING_URI=uri, MNIST_PROJECT_DIR=str(services.PROJECT_DIR)))
    assert done.returncode == 0, f"train failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    run_id = re.search(r"^run id: (\w+)$", done.stdout, re.M).group(1)
    return {"stdout": done.stdout, "client": MlflowClient(tracking_uri=uri), "run_id": run_id,
            "log": (root / "outputs" / "train.log").read_text()}


def phases_line(text: str) -> str:
    found = re.findall(r"phases: (.*)$", text, re.M)
    assert len(found) == 1, f"expected one phases line, found {found}"
    return found[0]


def test_the_summary_says_where_the_time_went(trained):
    lines = trained["stdout"].splitlines()
    line = phases_line(trained["stdout"])
    assert lines.index(f"phases: {line}") == len(lines) - 2, "the line before log: in the summary"
    expected = ["checks", "ray start", "run start", "fit", "outputs", "shutdown"]
    outer = re.split(r", |; ", re.sub(r" \(.*\)", "", line))  # the driver's phases, fit's in brackets
    assert [re.fullmatch(r"(.+?) [\d.]+ s", part).group(1) for part in outer] == [*expected, "total"], line
    inside = re.search(r"fit [\d.]+ s \((.*)\)", line).group(1)
    for name in ("workers ready", "data ready", "model ready", "epoch 1", "epoch 2", "checkpoint", "evaluate",
                 "plots", "mlflow logging", "export", "register"):
        assert re.search(rf"(^|, ){name} [\d.]+ s", inside), f"{name!r} missing from fit's phases: {inside}"


def test_train_log_has_the_same_line(trained):
    assert phases_line(trained["log"]) == phases_line(trained["stdout"])


def test_every_phase_is_an_mlflow_metric_logged_once(trained):
    client, run_id = trained["client"], trained["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for name in (*DRIVER_PHASES, *WORKER_PHASES):
        history = client.get_metric_history(run_id, f"phase_{name}_s")
        steps = list(range(1, EPOCHS + 1)) if name == "epoch" else [0]
        assert sorted(m.step for m in history) == steps, f"phase_{name}_s: steps {[m.step for m in history]}"
        assert all(m.value >= 0 for m in history), history
    metrics = run.data.metrics
    assert metrics["phase_fit_s"] == pytest.approx(metrics["fit_wall_s"], abs=0.001)
    inside_fit = sum(metrics[f"phase_{name}_s"] for name in WORKER_PHASES if name != "epoch")
    epochs = client.get_metric_history(run_id, "phase_epoch_s")
    assert inside_fit + sum(m.value for m in epochs) <= metrics["phase_fit_s"] + 1.0  # clocks of one machine
    # the epoch metrics are as they were: one value per epoch, and each epoch's phase holds its epoch_time_s
    assert_one_value_per_epoch(client, run_id, EPOCHS)
    epoch_time = {m.step: m.value for m in client.get_metric_history(run_id, "epoch_time_s")}
    assert all(m.value >= epoch_time[m.step] - 0.01 for m in epochs), (epochs, epoch_time)
