"""`mnist-job train` on a real multi-node Ray cluster, tracking to a real MLflow server with S3 artifacts.

One training run (2 workers on 2 worker nodes, a small subset, 2 epochs) is shared by the
assertions below; they check what a user would look at in MLflow afterwards.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mnist_job.data.dvc_store import dvc_lock_hash
from tests.support.training import assert_one_value_per_epoch, running_stack

pytestmark = pytest.mark.slow

EPOCHS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_dataset):
    root = tmp_path_factory.mktemp("cluster-train")
    # No S3 credentials on the Ray nodes or the driver: the MLflow server proxies artifacts,
    # checkpoints stay on the local disk.
    with running_stack(root) as stack:
        done = subprocess.run(
            [sys.executable, "-m", "mnist_job", "train", "--epochs", str(EPOCHS), "--num-workers", "2",
             "--train-subset", "6000", "--test-subset", "2000", "--set", "data.validation_size=1000",
             "--set", "mlflow.register_min_accuracy=0.5", "--set", "mlflow.registered_model=mnist-cnn-test",
             "--set", f"train.storage_path={root / 'checkpoints'}", "--set", f"train.output_dir={root / 'outputs'}",
             "--run-name", "cluster-test"],
            capture_output=True, text=True, env=stack.env(s3_credentials=False), cwd=root, timeout=900)
        print(done.stdout[-4000:], done.stderr[-4000:])
        assert done.returncode == 0, f"train failed ({done.returncode}); logs in {root}:\n{done.stderr[-3000:]}"
        run_id = re.search(r"run id: (\w+)", done.stdout).group(1)
        yield {"client": stack.client(), "run_id": run_id, "s3": stack.s3, "output": done, "root": root,
               "dashboard": stack.ray.dashboard}


def test_run_has_every_param(trained):
    params = trained["client"].get_run(trained["run_id"]).data.params
    assert params["train.epochs"] == str(EPOCHS)
    assert params["train.num_workers"] == "2"
    assert params["data.train_subset"] == "6000"
    assert {"model.width", "train.learning_rate", "train.batch_size", "mlflow.experiment"} <= params.keys()


def test_one_value_per_epoch_for_each_metric(trained):
    client = trained["client"]
    assert_one_value_per_epoch(client, trained["run_id"], EPOCHS)
    run = client.get_run(trained["run_id"])
    assert run.data.metrics["test_accuracy"] > 0.8
    assert run.info.status == "FINISHED"


def test_plots_metrics_and_model_are_artifacts_in_s3(trained):
    client = trained["client"]
    files = {f.path for f in client.list_artifacts(trained["run_id"], "plots")}
    assert {"plots/confusion_matrix.png", "plots/training_curves.png"} <= files
    keys = trained["s3"].keys("mlflow-artifacts")
    assert any(k.endswith("plots/confusion_matrix.png") for k in keys)
    assert any(re.search(r"models/m-\w+/artifacts/MLmodel$", k) for k in keys), keys


def test_model_is_registered(trained):
    client = trained["client"]
    versions = client.search_model_versions("name='mnist-cnn-test'")
    assert len(versions) == 1
    assert versions[0].run_id == trained["run_id"]
    assert client.get_run(trained["run_id"]).data.tags["model.registered"] == "mnist-cnn-test/1"
    # the first version is the champion, tagged with where it came from (mnist_job/tracking/registry.py)
    assert client.get_model_version_by_alias("mnist-cnn-test", "champion").version == "1"
    tags = versions[0].tags
    assert tags["run_id"] == trained["run_id"] and float(tags["test_accuracy"]) > 0.5
    assert tags["git_commit"] == client.get_run(trained["run_id"]).data.tags["git.commit"]


def test_run_tags_identify_code_data_and_workers(trained, project_dir):
    tags = trained["client"].get_run(trained["run_id"]).data.tags
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git.commit"])
    assert tags["dvc.data_md5"] == dvc_lock_hash(project_dir, "data/mnist")
    assert tags["workers.count"] == "2" and tags["workers.kind"] == "cpu"
    import mlflow
    import ray
    import torch

    assert (tags["version.ray"], tags["version.torch"], tags["version.mlflow"]) == (
        ray.__version__, torch.__version__, mlflow.__version__)


def test_workers_ran_on_both_worker_nodes(trained):
    """One Ray Train worker on each worker node (the head has no CPUs), as Ray's actor table records them."""
    from ray.util.state import list_actors, list_nodes

    address = trained["dashboard"]
    workers = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                          raise_on_missing_output=False)
    head = {n.node_id for n in list_nodes(address=address, detail=True) if n.is_head_node}
    nodes = [w.node_id for w in workers]
    assert len(nodes) == 2 and len(set(nodes)) == 2, f"expected 2 workers on 2 nodes, got nodes {nodes}"
    assert not head & set(nodes), "a worker ran on the head node"


def test_the_terminal_shows_one_line_per_epoch_and_the_log_file_every_rank(trained):
    """A person sees the job's lines (rank 0's, once each); Ray's own chatter and every rank go to train.log."""
    stdout = trained["output"].stdout
    epoch_lines = [line for line in stdout.splitlines() if re.match(r"epoch \d+/", line)]
    assert [line.split()[1] for line in epoch_lines] == [f"{e}/{EPOCHS}" for e in range(1, EPOCHS + 1)], stdout
    for chatter in ("TrainingReport", "Checkpoint successfully created", "PreemptionWatcher", "RayTrainWorker pid=",
                    "TrainController", "[rank 1]", "UserWarning"):
        assert chatter not in stdout + trained["output"].stderr, f"{chatter!r} reached the terminal"
    assert re.search(r"^ray: connected to \S+ \(\d+ CPUs, 0 GPUs\) in [\d.]+ s; 2 workers", stdout, re.M), stdout
    assert re.search(r"^data ready in [\d.]+ s: ", stdout, re.M), stdout
    for line in ("run id:", "test accuracy:", "registered: mnist-cnn-test/1", "model:", "plots:", "log:"):
        assert re.search(rf"^{line}", stdout, re.M), f"no {line!r} line in the summary:\n{stdout}"

    log = (trained["root"] / "outputs" / "train.log").read_text()
    for rank in (0, 1):
        for epoch in range(1, EPOCHS + 1):
            assert re.search(rf"\(RayTrainWorker pid=\d+.*\) \[rank {rank}\] epoch {epoch}/{EPOCHS} train_loss=\S+ "
                             r".*images/s=\d+", log), f"rank {rank} epoch {epoch} missing from train.log"
    assert "Reporting training result" in log  # Ray Train's own lines are kept, in the file


def test_outputs_for_dvc_and_evaluate(trained):
    root = trained["root"]
    assert (root / "outputs" / "model" / "checkpoint.pt").is_file()
    assert '"run_id"' in (root / "outputs" / "run.json").read_text()


def test_the_dvc_dataset_is_the_runs_input(trained, project_dir):
    run = trained["client"].get_run(trained["run_id"])
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    md5 = dvc_lock_hash(project_dir, "data/mnist")
    assert inputs[0].dataset.name == "data/mnist"
    assert inputs[0].dataset.digest == md5.removesuffix(".dir")
    assert f"files/md5/{md5[:2]}/{md5[2:]}" in inputs[0].dataset.source
