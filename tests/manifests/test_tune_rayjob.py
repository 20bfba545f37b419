"""The tuning RayJob (values-tune.yaml, alone for GPUs or after values-cpu-kind.yaml): `mnist-job tune`
with the study named after the RayJob and kept in S3, its params valid for the package, and the
training RayJob unchanged. CRD and Kubernetes schema checks run on every profile in test_render.py.
"""

from __future__ import annotations

import re
import shlex

import pytest
from manifest_helpers import RAYJOB_RELEASE, ROOT, TUNE_RELEASE, one

from mnist_job.core.config import load_params


def _argv(render, profile: str) -> tuple[dict, list[str]]:
    rayjob = one(render(profile), "RayJob")
    return rayjob, shlex.split(rayjob["spec"]["entrypoint"])


def _sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


@pytest.mark.parametrize(("profile", "gpu"), [("rayjob-tune", "true"), ("rayjob-tune-cpu-kind", "false")])
def test_the_tune_rayjob_runs_a_resumable_study_named_after_itself(render, profile, gpu):
    rayjob, argv = _argv(render, profile)
    assert argv[:2] == ["mnist-job", "tune"] and argv[argv.index("--params") + 1] == "/app/params.yaml"
    values = dict(item.split("=", 1) for item in _sets(argv))
    assert values["tune.study_name"] == TUNE_RELEASE == rayjob["metadata"]["name"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+/ray-tune", values["tune.storage_path"]), values["tune.storage_path"]
    assert values["train.use_gpu"] == gpu and values["train.output_dir"].startswith("/tmp/")
    assert "train.run_name" not in values and "train.if_finished" not in values, "each trial names its own run"
    assert values["mlflow.register_min_accuracy"] == "1", "trials are never registered"
    if profile == "rayjob-tune-cpu-kind":
        assert int(values["data.train_subset"]) <= 20000, "the kind profile's small subset still applies"


@pytest.mark.parametrize("profile", ["rayjob-tune", "rayjob-tune-cpu-kind"])
def test_the_entrypoints_params_are_valid_for_the_package(render, profile):
    _, argv = _argv(render, profile)
    params = load_params(ROOT / "params.yaml", _sets(argv))
    assert params.tune.trials == 8 and params.tune.max_epochs == 3
    assert params.tune.search, "the search space comes from params.yaml"


def test_the_training_rayjob_still_trains(render):
    rayjob, argv = _argv(render, "rayjob-gpu")
    assert argv[1] == "train" and rayjob["metadata"]["name"] == RAYJOB_RELEASE


def test_an_unknown_command_fails_rendering(helm_template):
    from manifest_helpers import RAYJOB

    result = helm_template(RAYJOB, "x", "--set", "job.command=serve")
    assert result.returncode != 0 and 'job.command: "serve" is neither train nor tune' in result.stderr
