"""Named variants: every shipped preset validates and changes what it says; a bad name or file exits 2."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mnist_job import cli
from mnist_job.core import presets
from mnist_job.core.config import Params, load_params
from mnist_job.core.errors import InvalidInput

REQUIRED = {"default", "fast", "small-hidden", "small-data", "blurred"}


def preset_params(project_dir, name: str, *overrides: str) -> Params:
    return load_params(project_dir / "params.yaml", [*presets.preset_overrides(name), *overrides])


def test_the_named_variants_are_shipped_and_described():
    assert REQUIRED <= set(presets.preset_names())
    for name in presets.preset_names():
        assert presets.describe(name), f"mnist_job/presets/{name}.yaml has no first comment line"


def test_each_preset_sets_what_its_name_says(project_dir):
    default = load_params(project_dir / "params.yaml")
    assert preset_params(project_dir, "default") == default
    fast = preset_params(project_dir, "fast")
    assert (fast.train.epochs, fast.train.batch_size, fast.train.learning_rate) == (1, 128, 0.01)
    assert (fast.train.adam_betas, fast.train.weight_decay, fast.model.dropout) == ([0.7, 0.9], 0.0, 0.0)
    assert preset_params(project_dir, "small-hidden").model.width < default.model.width // 4
    small_data = preset_params(project_dir, "small-data")
    assert 0 < small_data.data.train_subset <= 10000
    assert small_data.data.train_subset > small_data.data.validation_size
    blurred = preset_params(project_dir, "blurred")  # the second DVC-tracked dataset (dvc.yaml, prepare-blurred)
    assert blurred.data.dir == "data/mnist-blurred" and (project_dir / "data/mnist-blurred/manifest.json").is_file()
    # everything a preset does not name stays as in the params file
    assert fast.data == default.data and small_data.train == default.train


def test_set_and_flags_win_over_the_preset(project_dir, monkeypatch):
    assert preset_params(project_dir, "fast", "train.epochs=2").train.epochs == 2
    seen = {}

    def take_params(params, runtime, verbose=False):  # what `train` hands the driver; no Ray
        seen["p"] = params
        return SimpleNamespace(summary_lines=lambda: ["run id: r"])

    monkeypatch.setattr("mnist_job.cli.commands.run_training", take_params)
    monkeypatch.chdir(project_dir)
    assert cli.run(["train", "--preset", "fast", "--epochs", "3", "--set", "model.width=16"]) == 0
    assert (seen["p"].train.epochs, seen["p"].model.width, seen["p"].train.adam_betas) == (3, 16, [0.7, 0.9])


def test_unknown_preset_is_named_and_exits_2(capsys, monkeypatch, project_dir):
    monkeypatch.chdir(project_dir)
    assert cli.main(["train", "--preset", "fastest"]) == 2
    err = capsys.readouterr().err
    assert "--preset: unknown preset 'fastest'" in err and "fast, " in err
    assert "Traceback" not in err


def test_presets_lists_every_variant_with_its_settings(capsys, monkeypatch, project_dir):
    monkeypatch.chdir(project_dir)
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert name in out
    assert "train.adam_betas: [0.7, 0.9]" in out


@pytest.mark.parametrize(("content", "expected"), [
    ("train:\n  epoch: 1\n", "preset broken: train.epoch: unknown key"),
    ("train:\n  epochs: 0\n", "preset broken: train.epochs"),
    ("train: [1, 2\n", "not valid YAML"),
    ("- 1\n", "must hold a mapping"),
])
def test_a_broken_preset_file_is_named(tmp_path, monkeypatch, capsys, project_dir, content, expected):
    (tmp_path / "broken.yaml").write_text(content)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    monkeypatch.chdir(project_dir)
    assert cli.main(["presets"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    with pytest.raises(InvalidInput):
        load_params(project_dir / "params.yaml", presets.preset_overrides("broken"))
