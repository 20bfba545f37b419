"""Named variants of the experiment: ``mnist-job train --preset NAME``, listed by ``mnist-job presets``.

A preset is a YAML file in mnist_job/presets/ (shipped with the package, so the image has them) that
holds part of params.yaml: only the keys it changes, and a first comment line saying what it is for.
It applies on top of the params file and below ``--set`` and the flags, as if its keys had been given
as the first ``--set`` items, so it is validated by the same model and its errors name the same keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mnist_job.core.errors import InvalidInput

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _file(name: str) -> Path:
    names = preset_names()
    if name not in names:
        raise InvalidInput(f"--preset: unknown preset {name!r} (known: {', '.join(names)})")
    return PRESETS_DIR / f"{name}.yaml"


def describe(name: str) -> str:
    """The preset's first comment line."""
    first = _file(name).read_text().splitlines()[:1]
    return first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""


def preset_settings(name: str) -> dict[str, Any]:
    """The dotted keys the preset sets, with their values, in file order."""
    path = _file(name)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise InvalidInput(f"--preset {name}: {path} is not valid YAML") from None
    if not isinstance(tree, dict):
        raise InvalidInput(f"--preset {name}: {path} must hold a mapping of sections (data, model, train, mlflow)")
    settings: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                walk(value, dotted)
            else:
                settings[dotted] = value

    walk(tree, "")
    return settings


def preset_overrides(name: str) -> list[str]:
    """The preset as ``--set`` items (``key=value``, values in YAML), to go before the user's own."""
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in preset_settings(name).items()]
