"""The tune section's bad input: one clear error naming the field, exit 2, no traceback, before Ray starts."""

from __future__ import annotations

import pytest

from mnist_job.core.config import load_params
from mnist_job.experiments.tune import optuna_space, trial_params
from tests.support.cli import run_cli


@pytest.mark.parametrize(("args", "named"), [
    (["--set", "tune.search={}"], "tune.search: the search space is empty"),
    (["--set", "tune.search.dropout.low=0.5"], "tune.search.dropout: inverted or empty range: low 0.5 is not below high 0.4"),
    (["--set", "tune.search.learning_rate.low=0"], "tune.search.learning_rate: a log range needs low > 0"),
    (["--budget-s", "0"], "tune.budget_s: Input should be greater than 0"),
    (["--trials", "0"], "tune.trials: Input should be greater than or equal to 1"),
    (["--set", "tune.search.width={choices: [8.5]}"], "tune.search.width: whole numbers only"),
    (["--set", "tune.search.epochs={low: 1, high: 3}"], "tune.search: not searchable: epochs"),
    (["--set", "tune.search.dropout={low: 0.1}"], "tune.search.dropout: a range needs both low and high"),
    (["--max-epochs", "1", "--set", "tune.grace_epochs=2"], "tune.grace_epochs (2) exceeds tune.max_epochs (1)"),
])
def test_bad_tune_params_exit_2_naming_the_field(args, named):
    done = run_cli("tune", *args, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def test_the_space_and_a_trials_params_follow_params_yaml(project_dir):
    params = load_params(project_dir / "params.yaml", ["tune.storage_path=s3://studies/tune", "tune.max_epochs=2"])
    space = optuna_space(params)
    assert space["learning_rate"].log and space["learning_rate"].low == 0.0005
    assert space["width"].choices == (8, 16, 32, 48), "whole-number choices stay ints"
    trial = trial_params(params, {"learning_rate": 0.002, "width": 16, "batch_size": 128, "dropout": 0.2,
                                  "weight_decay": 0.001}, "st", "abc123", 1)
    assert (trial.train.learning_rate, trial.model.width, trial.train.batch_size) == (0.002, 16, 128)
    assert trial.train.epochs == 2 and trial.train.run_name == "st-abc123"
    assert trial.train.storage_path == "s3://studies/tune/st/train"
    assert trial.train.output_dir == "outputs/tune/st/abc123", "model files stay local when the study is on S3"
