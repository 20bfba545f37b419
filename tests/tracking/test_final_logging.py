"""The final logging of a run is exactly-once: a retry after a partial failure logs nothing twice.

Real MLflow (SQLite store, local artifacts); the failure is injected by a client that drops the
connection once, at the last step, after the model was logged and registered.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_job.core.phases import PhaseClock
from mnist_job.evaluation.scoring import evaluate
from mnist_job.model.network import build_model
from mnist_job.tracking import registry


class DropsOnce:
    """A real MlflowClient that fails the first ``set_tag(FINAL_TAG)``, as a server going away would."""

    def __init__(self, client):
        self.client, self.dropped = client, False

    def __getattr__(self, name):
        return getattr(self.client, name)

    def set_tag(self, run_id, key, value):
        if key == registry.FINAL_TAG and not self.dropped:
            self.dropped = True
            raise ConnectionError("connection reset by peer")
        return self.client.set_tag(run_id, key, value)


def test_a_retry_after_a_partial_failure_logs_the_model_and_the_version_once(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("final", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20)
    model = build_model(width=4, dropout=0.0).eval()
    evaluation = evaluate(model, images, labels)
    folder = tmp_path / "final"
    for sub in ("plots", "metrics"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / f"{sub}.txt").write_text(sub)
    example = images[:2]  # raw pixels: the model's input example
    clock = PhaseClock()  # rank 0's phases before the final logging
    clock.add("data_ready", 0.5)
    for epoch in (1, 2):
        clock.add("epoch", 3.0, step=epoch)

    def log(with_client):
        return registry.log_final_results(with_client, uri, run_id, model, evaluation, folder, example, "mnist-once", 1,
                                          phases=clock)

    with pytest.raises(ConnectionError):
        log(DropsOnce(client))
    version = log(client)

    assert version == "1"
    assert len(client.search_model_versions("name='mnist-once'")) == 1, "one registry version"
    assert len(mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")) == 1, "one model"
    assert len(client.get_metric_history(run_id, "test_accuracy")) == 1, "one test metric"
    for phase in ("data_ready", "mlflow_logging", "export", "register"):
        assert len(client.get_metric_history(run_id, f"phase_{phase}_s")) == 1, f"one value of phase {phase}"
    assert [m.step for m in client.get_metric_history(run_id, "phase_epoch_s")] == [1, 2], "one value per epoch"
    tags = client.get_run(run_id).data.tags
    assert tags[registry.FINAL_TAG] == "true" and tags["model.registered"] == "mnist-once/1"
    assert client.get_run(run_id).info.status == "RUNNING", "FINISHED is the driver's to set, after run.json"
    # and once done, a further retry changes nothing
    assert log(client) == "1"
    assert len(client.search_model_versions("name='mnist-once'")) == 1
    assert len(client.get_metric_history(run_id, "phase_export_s")) == 1
