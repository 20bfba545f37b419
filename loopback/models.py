"""A trained network and a registered model for the tests that use the model (registry, predict, serving).

Training is real but short (a small CNN, one pass over 20,000 images): enough for about 96% test
accuracy, so a broken contract (wrong scaling, wrong orientation) shows up as a large drop, not as
noise. On a busy two-core machine that still takes minutes, so the weights are kept in pytest's
cache folder, keyed by the dataset and this file. The registered model is logged exactly as a training run
logs it, through mnist_job/tracking/registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def train_small_network(dataset: Path, cache: Path | None = None, images: int = 20000, seed: int = 0):
    """The network, trained once; with ``cache`` its weights are reused while dataset and recipe stay the same."""
    import hashlib
    import json

    import torch

    from mnist_job.model import network
    from mnist_job.model.network import build_model, images_to_tensor

    # The network's code is part of the key: a cached state_dict of an older architecture does not load.
    recipe = json.dumps([json.loads((dataset / "manifest.json").read_text())["files"], images, seed,
                         Path(__file__).read_text(), Path(network.__file__).read_text()], sort_keys=True)
    saved = cache / f"network-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.pt" if cache else None
    model = build_model(width=8, dropout=0.0)
    if saved and saved.is_file():
        model.load_state_dict(torch.load(saved, weights_only=True))
        return model.eval()
    torch.manual_seed(seed)
    x = images_to_tensor(np.load(dataset / "train_images.npy")[:images])
    y = torch.as_tensor(np.load(dataset / "train_labels.npy")[:images].astype(np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)
    model.train()
    for start in range(0, len(x), 64):
        loss = torch.nn.functional.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), saved)
    return model.eval()


@dataclass
class RegisteredModel:
    tracking_uri: str
    name: str
    version: str
    run_id: str
    test_accuracy: float  # the package's own evaluation (mnist_job/evaluation/scoring.py)


def register(tracking_uri: str, network, dataset: Path, folder: Path, name: str = "mnist-cnn",
             experiment: str = "serving-tests", run_tags: dict | None = None) -> RegisteredModel:
    """One finished run holding ``network``, scored on the full test set and registered as training does it."""
    from mnist_job.evaluation.scoring import evaluate
    from mnist_job.tracking import registry
    from mnist_job.tracking.client import mlflow_client

    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id, tags=run_tags or {}).info.run_id
    images, labels = np.load(dataset / "test_images.npy"), np.load(dataset / "test_labels.npy")
    evaluation = evaluate(network, images, labels)
    for sub in ("plots", "metrics"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "note.txt").write_text(sub)
    version = registry.log_final_results(client, tracking_uri, run_id, network, evaluation, folder, images[:2],
                                         name, 1)
    client.set_terminated(run_id, "FINISHED")
    return RegisteredModel(tracking_uri, name, version, run_id, evaluation.accuracy)
