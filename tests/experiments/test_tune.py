"""`mnist-job tune` on a local Ray cluster and a real MLflow server, with tiny budgets.

One study shows the nesting, one value per epoch per child metric, the best config on the parent and
ASHA stopping trials early; another is killed after its first finished trial and resumed, running only
the trials that had not finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from loopback import services
from loopback.polling import wait_until
from mnist_job.experiments.compare import KIND_TAG
from mnist_job.experiments.tune import ORPHAN_TAG, STUDY_TAG, TRIAL_TAG
from tests.support.training import EPOCH_METRICS, epoch_steps

pytestmark = pytest.mark.slow

TINY = ["--set", "train.num_workers=1", "--set", "data.train_subset=3000", "--set", "data.validation_size=500",
        "--set", "data.test_subset=500", "--set", "mlflow.register_min_accuracy=1.0"]


def _tune(mlflow_server, tmp_path, study: str, *args: str) -> subprocess.Popen:
    log = (tmp_path / f"{study}.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_job", "tune", "--study-name", study, "--experiment", "tune-test",
         "--set", f"tune.storage_path={tmp_path / 'studies'}", "--set", f"train.output_dir={tmp_path / 'out'}",
         *TINY, *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=services.PROJECT_DIR, start_new_session=True,
        env=services.base_env(MLFLOW_TRACKING_URI=mlflow_server.uri))


def _finish(process: subprocess.Popen, tmp_path, study: str, timeout: float = 540) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    text = (tmp_path / f"{study}.log").read_text()
    assert process.returncode == 0, text[-4000:]
    return text


def _study_runs(client, study: str):
    experiment = client.get_experiment_by_name("tune-test")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}'")
    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "study"]
    assert len(parents) == 1, f"one parent run per study, found {len(parents)}"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


def test_a_study_nests_its_trials_logs_the_best_config_and_asha_stops_weak_trials(client, mlflow_server, tmp_path):
    # one searched param, a hopeless and a good learning rate: ASHA's first rung (epoch 1 of 2) sees the gap
    text = _finish(_tune(mlflow_server, tmp_path, "asha", "--trials", "4", "--max-concurrent", "2",
                         "--max-epochs", "2", "--set", "tune.search={learning_rate: {choices: [0.00001, 0.005]}}"),
                   tmp_path, "asha")
    parent, children = _study_runs(client, "asha")
    assert len(children) == 4, text[-3000:]
    # a trial is a Ray worker, not the owner of the local cluster: it runs Ray Train's plain trainer, whose
    # placement-group cleaner frees a stopped trial's CPUs (mnist_job/training/ray_cluster.py: owns_local_cluster)
    assert "PlacementGroupCleaner" in text
    full = [c for c in children if c.info.status == "FINISHED"]
    stopped = [c for c in children if c.data.tags.get("tune.stopped_by", "").startswith("ASHA")]
    assert stopped, "ASHA stopped no trial early"
    assert full and len(full) + len(stopped) == 4
    for child in full:
        assert child.data.params["train.epochs"] == "2" and child.data.tags[TRIAL_TAG]
        for key in EPOCH_METRICS:
            assert epoch_steps(client, child.info.run_id, key) == [1, 2], f"{key}: one value per epoch"
        assert "test_accuracy" in child.data.metrics
    for child in stopped:
        assert child.info.status == "KILLED" and child.data.tags["tune.stopped_by"] == "ASHA at epoch 1"
        # Tune's decision reaches the trainer asynchronously: a stopped trial may log the next epoch before
        # it stops, but never the end of its schedule (the test metrics, the model)
        assert epoch_steps(client, child.info.run_id, "val_accuracy") in ([1], [1, 2])
        assert "test_accuracy" not in child.data.metrics

    tags = parent.data.tags
    best = next(c for c in full if c.info.run_id == tags["best.run_id"])  # trials of one learning rate may tie
    assert best.data.metrics["val_accuracy"] == max(r.data.metrics["val_accuracy"] for r in full)
    assert float(tags["best.train.learning_rate"]) == float(best.data.params["train.learning_rate"])
    assert tags["best.model_uri"] == best.data.tags["model.uri"]
    assert parent.data.metrics["trials_stopped_early"] == len(stopped)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"best_config.json", "search.png", "trials.md"}
    with open(client.download_artifacts(parent.info.run_id, "best_config.json", str(tmp_path))) as handle:
        assert json.load(handle)["run_id"] == best.info.run_id
    assert f"best params: train.learning_rate={float(tags['best.train.learning_rate']):.6g}" in text
    assert f"{len(stopped)} stopped early by ASHA" in text
    # where the study's time went, on its driver's clock: in the summary and on the study run
    phases = {key: value for key, value in parent.data.metrics.items() if key.startswith("phase_")}
    assert set(phases) == {f"phase_{name}_s" for name in ("checks", "ray_start", "study_start", "trials", "report")}
    assert phases["phase_trials_s"] > sum(phases.values()) / 2, phases  # four trials' training dominates
    assert "phases: checks " in text and ", study start " in text and ", trials " in text and ", report " in text


def test_a_killed_study_resumes_and_runs_only_the_unfinished_trials(client, mlflow_server, tmp_path):
    args = ("--trials", "3", "--max-concurrent", "1", "--max-epochs", "1",
            "--set", "tune.search={learning_rate: {low: 0.001, high: 0.01, log: true}}")
    process = _tune(mlflow_server, tmp_path, "resume", *args)

    def first_trial_finished():
        assert process.poll() is None, (tmp_path / "resume.log").read_text()[-3000:]
        experiment = client.get_experiment_by_name("tune-test")
        if experiment is None:
            return []
        runs = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`{STUDY_TAG}` = 'resume' and attributes.status = 'FINISHED'")
        return [r for r in runs if r.data.tags.get(TRIAL_TAG)]

    finished = wait_until(first_trial_finished, 400, "no trial finished within 400 s", interval=2)
    time.sleep(5)  # the next trial starts; Tune may or may not have saved the first one as done yet
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
    process.wait(timeout=60)
    done_before = {r.data.tags[TRIAL_TAG] for r in finished}

    text = _finish(_tune(mlflow_server, tmp_path, "resume", *args), tmp_path, "resume")
    assert "study: resume (resumed): 3 trials" in text, text[-3000:]
    _, runs = _study_runs(client, "resume")
    # a trial started in the second before Tune saved it, then killed, is unknown to the resumed study: its
    # run is marked and closed, and the study runs a trial in its place (mnist_job/experiments/tune.py)
    orphans = [r for r in runs if ORPHAN_TAG in r.data.tags]
    assert len(orphans) <= 1 and all(r.info.status == "KILLED" and r.data.tags[TRIAL_TAG] not in done_before
                                     for r in orphans), [(r.data.tags, r.info.status) for r in orphans]
    children = [r for r in runs if ORPHAN_TAG not in r.data.tags]
    trial_ids = [c.data.tags[TRIAL_TAG] for c in children]
    assert len(trial_ids) == len(set(trial_ids)) == 3, "no trial ran twice"
    assert done_before <= set(trial_ids), "a trial finished before the kill belongs to the resumed study"
    for child in children:
        if child.data.tags[TRIAL_TAG] in done_before:
            assert epoch_steps(client, child.info.run_id, "val_accuracy") == [1], "a finished trial was not rerun"
    assert all(c.info.status == "FINISHED" for c in children)
