"""`mnist-job compare` against a real MLflow server: runs picked by id, last N, tag and champion alias.

The runs are written with the MLflow client as the training loop writes them (params, one value per
epoch, final test metrics), so the comparison is tested on its own in seconds; tests/cluster covers
runs made by real training.
"""

from __future__ import annotations

import pytest

from loopback import services
from mnist_job.experiments import compare
from tests.support.cli import run_cli

EXPERIMENT = "compare-test"


def _trained_run(client, experiment_id: str, name: str, lr: str, accuracies: list[float], tags=None) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, run_name=name, tags=tags or {})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("train.learning_rate", lr), Param("train.epochs", str(len(accuracies))),
                                     Param("model.width", "32")])
    for epoch, accuracy in enumerate(accuracies, start=1):
        client.log_batch(run_id, metrics=[Metric("val_accuracy", accuracy, 0, epoch),
                                          Metric("train_loss", 1 - accuracy, 0, epoch),
                                          Metric("val_loss", 1.1 - accuracy, 0, epoch)])
    client.log_batch(run_id, metrics=[Metric("test_accuracy", accuracies[-1], 0, len(accuracies))])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


@pytest.fixture(scope="module")
def runs(client):
    experiment_id = client.create_experiment(EXPERIMENT)
    first = _trained_run(client, experiment_id, "slow", "0.001", [0.90, 0.95], {"variant": "a"})
    second = _trained_run(client, experiment_id, "fast", "0.004", [0.93, 0.97, 0.98], {"variant": "b"})
    third = _trained_run(client, experiment_id, "tiny", "0.004", [0.80], {"variant": "b"})
    unfinished = client.create_run(experiment_id, run_name="running").info.run_id  # never compared by --last
    return first, second, third, unfinished


def _env(server, **extra):
    return services.base_env(MLFLOW_TRACKING_URI=server.uri, **extra)


def test_two_runs_by_id_give_a_table_with_deltas_and_a_logged_comparison(client, runs, mlflow_server, tmp_path):
    first, second, _, _ = runs
    done = run_cli("compare", first, second, "--experiment", EXPERIMENT, "--out", str(tmp_path / "cmp"),
                   env=_env(mlflow_server))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    lr_row = next(line for line in lines if line.startswith("| train.learning_rate"))
    assert "0.001" in lr_row and "0.004" in lr_row
    assert not any(line.startswith("| model.width") for line in lines), "equal params are left out"
    accuracy_row = next(line for line in lines if line.startswith("| test_accuracy"))
    assert "+0.0300 better" in accuracy_row, accuracy_row
    assert "(-0.0300 better)" in next(line for line in lines if line.startswith("| train_loss"))

    png = tmp_path / "cmp" / "comparison_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = [r for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
              if r.data.tags.get(compare.KIND_TAG) == "comparison"]
    assert logged and logged[0].data.tags[compare.COMPARED_TAG] == f"{first},{second}"
    artifacts = {a.path for a in client.list_artifacts(logged[0].info.run_id)}
    assert artifacts == {"comparison.md", "comparison_curves.png"}
    downloaded = client.download_artifacts(logged[0].info.run_id, "comparison.md", str(tmp_path))
    assert open(downloaded).read() == (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| test_accuracy |" in open(downloaded).read()


def test_last_n_takes_finished_training_runs_oldest_first(client, runs):
    first, second, third, unfinished = runs
    picked = compare.last_runs(client, EXPERIMENT, 2)
    assert [r.run_id for r in picked] == [second, third]
    assert unfinished not in [r.run_id for r in compare.last_runs(client, EXPERIMENT, 10)]
    assert all(r.run_id in (first, second, third) for r in compare.last_runs(client, EXPERIMENT, 10)), \
        "comparison runs are not compared themselves"


def test_runs_by_tag(client, runs):
    _, second, third, _ = runs
    assert [r.run_id for r in compare.runs_by_tag(client, EXPERIMENT, "variant=b")] == [second, third]


def test_champion_first_then_the_chosen_runs(client, runs, mlflow_server):
    from mnist_job.core.config import Runtime, load_params

    first, second, _, _ = runs
    params = load_params(None, [f"mlflow.experiment={EXPERIMENT}", "mlflow.registered_model=compare-cnn"])
    runtime = Runtime.from_env(_env(mlflow_server))
    with pytest.raises(compare.InvalidInput, match="no 'champion' alias"):
        compare.compare_command(params, runtime, [first], champion=True, log=False)
    client.create_registered_model("compare-cnn")
    version = client.create_model_version("compare-cnn", f"runs:/{second}/model", run_id=second)
    client.set_registered_model_alias("compare-cnn", "champion", version.version)
    printed = compare.compare_command(params, runtime, [first], champion=True, log=False)
    header = printed.splitlines()[0]
    assert header.index(second[:8]) < header.index(first[:8]), "the champion is the reference column"


MISSING = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("args", "named"), [
    ([MISSING, MISSING[:-1] + "e"], f"run {MISSING!r}: not found"),
    (["--last", "2", "--experiment", "no-such-experiment"], "no experiment named 'no-such-experiment'"),
    (["--tag", "variant", "--experiment", EXPERIMENT], "--tag: 'variant': expected KEY=VALUE"),
    (["--last", "1", "--experiment", EXPERIMENT], "--last: 1"),
    (["--tag", "variant=zzz", "--experiment", EXPERIMENT], "--tag: no finished run"),
    (["--experiment", EXPERIMENT], "compare: name the runs"),
])
def test_bad_selections_exit_2_naming_what_is_wrong(runs, mlflow_server, args, named):
    done = run_cli("compare", *args, env=_env(mlflow_server))
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_server_exits_3(tmp_path):
    done = run_cli("compare", "--last", "2", env=services.base_env(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{services.free_port()}"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unreachable" in done.stderr and "Traceback" not in done.stderr


def test_where_runs_went_is_not_a_difference_worth_a_row():
    runs = [compare.RunSummary(f"run{i}", f"name{i}", {"train.output_dir": f"out/{i}", "train.run_name": f"n{i}",
                                                        "model.width": str(8 * (i + 1))}, {"images_per_s": 900.0 + i * 50})
            for i in range(2)]
    table = compare.markdown_table(runs)
    assert "train.output_dir" not in table and "train.run_name" not in table
    assert "| model.width | 8 | 16 |" in table and "| images_per_s | 900 | 950 (+50 better) |" in table
