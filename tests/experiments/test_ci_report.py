"""The CI report's verdicts against a real MLflow server: within tolerance, a gating accuracy drop
(exit 1), a speed miss reported only, an improvement that asks for a refresh, a refresh that prints
old against new, and a broken baseline file (exit 2). The runs are logged with the MLflow client;
`make ci-report` in .ci/run trains the real configuration.
"""

from __future__ import annotations

import json

import pytest

from loopback import services
from mnist_job.core.config import Runtime
from mnist_job.experiments.baseline import DEFAULT_CONFIG, DEFAULT_TOLERANCES, Baseline, ci_report
from tests.support.cli import run_cli

BASELINE = {"test_accuracy": 0.93, "test_loss": 0.27, "val_accuracy": 0.94, "images_per_s": 1400.0,
            "fit_wall_s": 70.0}


@pytest.fixture()
def baseline_file(tmp_path):
    path = tmp_path / "ci-baseline.json"
    Baseline(DEFAULT_CONFIG, {"model.width": "16"}, BASELINE, DEFAULT_TOLERANCES, {"run_id": "x"}).write(path)
    return path


def _run_with(client, **changes) -> str:
    from mlflow.entities import Metric, Param

    experiment = client.get_experiment_by_name("ci") or client.get_experiment(client.create_experiment("ci"))
    run_id = client.create_run(experiment.experiment_id, run_name="ci-run").info.run_id
    client.log_batch(run_id, params=[Param("model.width", "16")],
                     metrics=[Metric(k, v, 0, 1) for k, v in {**BASELINE, **changes}.items()])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _runtime(server) -> Runtime:
    return Runtime.from_env(services.base_env(MLFLOW_TRACKING_URI=server.uri))


def test_a_run_like_the_baseline_passes(client, mlflow_server, baseline_file):
    text, code = ci_report(_runtime(mlflow_server), baseline_file, _run_with(client, test_accuracy=0.925))
    assert code == 0
    assert "test_accuracy: 0.925 within tolerance of the baseline 0.93 (±0.01)" in text
    assert "| test_accuracy | 0.9300 | 0.9250 (-0.0050 worse) |" in text
    assert "OUTSIDE" not in text and text.endswith("ci-report: ok, every metric within tolerance")


def test_an_accuracy_drop_beyond_tolerance_fails_and_says_so(client, mlflow_server, baseline_file):
    run_id = _run_with(client, test_accuracy=0.90)
    done = run_cli("ci-report", "--baseline", str(baseline_file), "--run", run_id,
                   env=services.base_env(MLFLOW_TRACKING_URI=mlflow_server.uri))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_accuracy: OUTSIDE TOLERANCE: 0.9 is 0.03 worse than the baseline 0.93 (tolerance ±0.01; fails CI)" \
        in done.stdout
    assert "ci-report: FAILED" in done.stdout


def test_a_slow_machine_is_reported_not_failed(client, mlflow_server, baseline_file):
    text, code = ci_report(_runtime(mlflow_server), baseline_file, _run_with(client, images_per_s=500.0))
    assert code == 0
    assert "images_per_s: OUTSIDE TOLERANCE: 500 is 900 worse than the baseline 1400 (tolerance ±700; reported only)" \
        in text
    assert text.endswith("ci-report: ok, 1 metric(s) outside tolerance, reported only")


def test_a_better_model_asks_for_a_refresh_and_the_refresh_prints_old_and_new(client, mlflow_server, baseline_file):
    run_id = _run_with(client, test_accuracy=0.97)
    text, code = ci_report(_runtime(mlflow_server), baseline_file, run_id)
    assert code == 0 and "0.04 better" in text and "refresh: make ci-baseline" in text
    before = json.loads(baseline_file.read_text())

    text, code = ci_report(_runtime(mlflow_server), baseline_file, run_id, refresh=True)
    assert code == 0
    assert "| | old baseline | new baseline |" in text and "0.9700 (+0.0400 better)" in text
    after = json.loads(baseline_file.read_text())
    assert after["metrics"]["test_accuracy"] == 0.97 and after["made"]["run_id"] == run_id
    assert after["config"] == before["config"] and after["tolerances"] == before["tolerances"]


@pytest.mark.parametrize(("content", "named"), [
    (None, "does not exist; make one with `make ci-baseline`"),
    ("{not json", "is not a readable JSON file"),
    (json.dumps({"config": [], "metrics": {}}), "missing 'tolerances'"),
    (json.dumps({"config": [], "metrics": {}, "tolerances": {"test_accuracy": {"abs": -1}}}),
     "tolerances.test_accuracy must be a number >= 0"),
])
def test_a_broken_baseline_file_exits_2_naming_it(tmp_path, content, named):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    done = run_cli("ci-report", "--baseline", str(path), "--run", "0" * 32)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and str(path) in done.stderr and "Traceback" not in done.stderr
