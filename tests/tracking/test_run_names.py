"""Run names across reruns: a retry resumes the unfinished run; a finished name is refused or continued anew.

Real MLflow (client + SQLite store); the RayJob chart relies on ``train.if_finished=new-run`` so that the
same manifest applied again trains anew while a retry of one RayJob object resumes its own run.
"""

from __future__ import annotations

import pytest

from mnist_job.core.errors import InvalidInput
from mnist_job.tracking import runs as tracking


@pytest.fixture()
def client(tmp_path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture()
def experiment(client, tmp_path):
    return client.create_experiment("runs", artifact_location=(tmp_path / "artifacts").as_uri())


def _start(client, experiment, name, if_finished="refuse"):
    return tracking.start_or_resume_run(client, experiment, name, {"train.epochs": 1}, {}, if_finished)


def test_a_new_name_starts_a_run_under_that_name(client, experiment):
    run_id, name, resumed = _start(client, experiment, "mnist-train")
    assert (name, resumed) == ("mnist-train", False)
    tags = client.get_run(run_id).data.tags
    assert tags[tracking.RUN_NAME_TAG] == "mnist-train" and tags[tracking.RUN_BASE_TAG] == "mnist-train"


@pytest.mark.parametrize("status", ["FAILED", "KILLED", "RUNNING"])
def test_an_unfinished_run_is_resumed_whatever_the_policy(client, experiment, status):
    run_id, _, _ = _start(client, experiment, "mnist-train")
    client.set_terminated(run_id, status=status)
    for policy in ("refuse", "new-run"):
        again, name, resumed = _start(client, experiment, "mnist-train", policy)
        assert (again, name, resumed) == (run_id, "mnist-train", True)
        assert client.get_run(run_id).info.status == "RUNNING"


def test_a_finished_name_is_refused_by_default(client, experiment):
    run_id, _, _ = _start(client, experiment, "mnist-train")
    client.set_terminated(run_id, status="FINISHED")
    with pytest.raises(InvalidInput) as caught:
        _start(client, experiment, "mnist-train")
    assert "train.run_name" in str(caught.value) and "already finished" in str(caught.value)
    assert "train.if_finished=new-run" in str(caught.value)
    assert len(client.search_runs([experiment])) == 1, "a refusal creates no run"


def test_a_reapplied_rayjob_trains_anew_and_its_retry_resumes_the_new_run(client, experiment):
    first, _, _ = _start(client, experiment, "mnist-train", "new-run")
    client.set_terminated(first, status="FINISHED")

    # the same manifest applied again: a new run, in its own checkpoint folder (the Ray run name)
    second, second_name, resumed = _start(client, experiment, "mnist-train", "new-run")
    assert not resumed and second != first
    assert second_name.startswith("mnist-train-") and second_name != "mnist-train"
    assert client.get_run(second).data.tags[tracking.RUN_BASE_TAG] == "mnist-train"

    # that object's driver is retried (its run failed): the retry resumes the second run, not the first
    client.set_terminated(second, status="FAILED")
    again, again_name, resumed = _start(client, experiment, "mnist-train", "new-run")
    assert (again, again_name, resumed) == (second, second_name, True)


def test_a_resume_with_changed_run_defining_params_is_refused(client, experiment):
    from mnist_job.core.config import load_params

    params = load_params(None, ["train.epochs=3"])
    run_id, _, _ = tracking.start_or_resume_run(client, experiment, "mnist-train", params.flat(), {}, "refuse",
                                                params.run_defining())
    client.set_terminated(run_id, status="FAILED")
    changed = load_params(None, ["train.epochs=5", "train.max_failures=9"])
    with pytest.raises(InvalidInput) as caught:
        tracking.start_or_resume_run(client, experiment, "mnist-train", changed.flat(), {}, "refuse",
                                     changed.run_defining())
    message = str(caught.value)
    assert "train.epochs" in message and "'3'" in message and "'5'" in message
    assert "train.max_failures" not in message, "operational params may change between attempts"
    assert client.get_run(run_id).info.status == "FAILED", "a refused resume leaves the run as it was"
    # the same defining params (an operational one changed) resume
    same = load_params(None, ["train.epochs=3", "train.max_failures=9"])
    again, _, resumed = tracking.start_or_resume_run(client, experiment, "mnist-train", same.flat(), {}, "refuse",
                                                     same.run_defining())
    assert (again, resumed) == (run_id, True)


def test_the_training_data_is_the_runs_dataset_input_once(client, experiment):
    run_id, _, _ = _start(client, experiment, "mnist-train")
    location = "s3://dvc-remote/files/md5/71/3824b88a663877b29f6efe6db782c1.dir"
    for _ in range(2):  # a resumed run records nothing twice
        tracking.record_dataset(client, run_id, "data/mnist", "713824b88a663877b29f6efe6db782c1.dir", location)
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert (dataset.name, dataset.digest) == ("data/mnist", "713824b88a663877b29f6efe6db782c1")
    assert location in dataset.source
