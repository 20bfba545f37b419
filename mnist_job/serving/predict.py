"""`mnist-job predict`: the registered model (champion, a version, or a run's) on images, arrays and IDX files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnist_job.core.errors import DataError, InvalidInput
from mnist_job.model.pixel_pyfunc import DIGIT_COLUMNS, pixel_batch
from mnist_job.serving.images import Sample, collect
from mnist_job.tracking.registry import CHAMPION


def model_uri(client, name: str, version: str | None = None, run_id: str | None = None) -> str:
    """``models:/NAME@champion``, ``models:/NAME/VERSION`` or the model a run logged; checked to exist (exit 2)."""
    from mlflow.exceptions import MlflowException

    try:
        if run_id:
            uri = client.get_run(run_id).data.tags.get("model.uri")
            if not uri:
                raise InvalidInput(f"--run: run {run_id} logged no model")
            return uri
        if version:
            client.get_model_version(name, str(version))
            return f"models:/{name}/{version}"
        client.get_model_version_by_alias(name, CHAMPION)
        return f"models:/{name}@{CHAMPION}"
    except MlflowException:
        what = f"run {run_id}" if run_id else f"{name} version {version}" if version else f"{name}@{CHAMPION}"
        hint = "" if run_id or version else " (train a model, or set one with `mnist-job promote`)"
        raise InvalidInput(f"{'--run' if run_id else '--version' if version else '--model'}: "
                           f"no model {what} in the registry{hint}") from None


def load_model(tracking_uri: str, uri: str):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri)


def classify(model, samples: list[Sample]) -> list[dict]:
    """One row per sample: name, digit, its probability, the 10 probabilities."""
    try:
        batch = pixel_batch(np.stack([s.pixels for s in samples]))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    frame = model.predict(batch)
    rows = []
    for sample, (_, row) in zip(samples, frame.iterrows(), strict=True):
        probabilities = [round(float(row[c]), 6) for c in DIGIT_COLUMNS]
        rows.append({"input": sample.name, "digit": int(row["digit"]), "probability": max(probabilities),
                     "probabilities": probabilities})
    return rows


def render(rows: list[dict], as_json: bool) -> str:
    if as_json:
        return json.dumps(rows, indent=2)
    width = max([len("input"), *(len(r["input"]) for r in rows)])
    lines = [f"{'input':<{width}}  digit  probability"]
    lines += [f"{r['input']:<{width}}  {r['digit']:>5}  {r['probability']:>11.4f}" for r in rows]
    return "\n".join(lines)


def predict_files(client, tracking_uri: str, name: str, paths: list[Path], invert: str, version: str | None,
                  run_id: str | None, as_json: bool) -> str:
    samples = collect(paths, invert)  # bad input fails before the model is fetched
    model = load_model(tracking_uri, model_uri(client, name, version, run_id))
    return render(classify(model, samples), as_json)
