"""One contender per process: ``python -m bench.contenders NAME CONFIG_JSON OUT_JSON``.

Every contender trains its fixed schedule with ``cfg['seed']``, scores the same test set after each
epoch (untimed, and its seconds reported so the orchestrator can take them out of the wall time),
writes its final model to disk as a user's run would, and writes per-epoch records: epoch, train_s
(pure training), epoch_s (what the recipe spends per epoch, e.g. the project's validation pass),
elapsed_s (cumulative recipe time up to the end of that epoch), images, test_accuracy.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    epoch_reporter,
    load_arrays,
    project_params,
    test_accuracy,
    test_tensors,
    write_json,
)

# name: what it is (bench/README.md describes each)
CONTENDERS = {
    "examples": "pytorch/examples recipe: per-sample DataLoader, Adadelta, batch 64",
    "examples_preloaded": "the same recipe on preloaded normalised tensors (same shuffling and batches)",
    "fast": "project loop, presets/fast.yaml, one process, no Ray",
    "default": "project loop, params.yaml, one process, no Ray",
    "ray_2": "project Ray Train job (run_training), 2 workers, params.yaml, local Ray",
}


def save_model(model, folder: Path) -> float:
    """The trained model on disk, as the user gets it; returns when that was done (epoch seconds)."""
    import torch

    torch.save(model.state_dict(), folder / "model.pt")
    return time.time()


def run_examples(cfg: dict, preloaded: bool, folder: Path) -> dict:
    import torch

    from bench.examples_recipe import run
    from mnist_job.model.network import count_flops_per_image

    torch.set_num_threads(cfg["threads"])
    data = load_arrays()
    test_x, test_y = test_tensors(data, cfg["test_subset"])
    epochs: list[dict] = []
    name = "examples_preloaded" if preloaded else "examples"
    extra = run({**cfg, "epochs": cfg["examples_epochs"]}, data, test_x, test_y, epoch_reporter(epochs, name), preloaded)
    return {"epochs": epochs, "threads": cfg["threads"], "model_written_at": save_model(extra["model"], folder),
            "scoring_s": extra["scoring_s"], "flops_per_image_forward": count_flops_per_image(extra["model"]),
            "recipe": extra["recipe"]}


def run_project_single(cfg: dict, preset: str, folder: Path) -> dict:
    """The project's model and recipe in one process, world size 1, with the project's own functions."""
    import torch

    from mnist_job.core.presets import preset_overrides
    from mnist_job.model.network import build_model, count_flops_per_image, images_to_tensor
    from mnist_job.training.epoch import run_epoch, score, shard_indices, split_train_validation

    params = project_params(cfg, preset_overrides(preset))
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(params.train.seed)
    data = load_arrays()
    test_x, test_y = test_tensors(data, cfg["test_subset"])
    (train_x, train_y), (val_x, val_y) = split_train_validation(
        data.train_images, data.train_labels, params.data.validation_size, params.data.train_subset)
    x, y = torch.as_tensor(train_x), torch.as_tensor(train_y.astype(np.int64))  # uint8: run_epoch normalises
    vx, vy = images_to_tensor(val_x), torch.as_tensor(val_y.astype(np.int64))
    model = build_model(params.model.width, params.model.dropout)
    batch = params.train.batch_size
    steps = len(x) // batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.learning_rate,
                                  weight_decay=params.train.weight_decay, betas=tuple(params.train.adam_betas))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.train.learning_rate,
                                                    total_steps=params.train.epochs * steps)
    epochs: list[dict] = []
    report = epoch_reporter(epochs, preset)
    elapsed = scoring = 0.0
    for epoch in range(1, params.train.epochs + 1):
        t0 = time.perf_counter()
        shard = shard_indices(len(x), epoch, params.train.seed, 0, 1)
        _, _, seen = run_epoch(model, optimizer, scheduler, x, y, shard, batch)
        train_s = time.perf_counter() - t0
        score(model, vx, vy)  # the recipe's per-epoch validation pass, as in train_loop_per_worker
        epoch_s = time.perf_counter() - t0
        elapsed += epoch_s
        t1 = time.perf_counter()
        acc = test_accuracy(model, test_x, test_y)  # untimed
        scoring += time.perf_counter() - t1
        report({"epoch": epoch, "train_s": train_s, "epoch_s": epoch_s, "elapsed_s": elapsed, "images": seen,
                "images_per_s": seen / train_s, "test_accuracy": acc})
    return {"epochs": epochs, "threads": cfg["threads"], "model_written_at": save_model(model, folder),
            "scoring_s": scoring, "flops_per_image_forward": count_flops_per_image(model), "params": params.flat()}


def main(argv: list[str]) -> int:
    name, cfg, out = argv[0], json.loads(argv[1]), Path(argv[2])
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        folder = Path(tmp)
        if name in ("examples", "examples_preloaded"):
            result = run_examples(cfg, name == "examples_preloaded", folder)
        elif name in ("fast", "default"):
            result = run_project_single(cfg, name, folder)
        elif name == "ray_2":
            from bench.ray_contender import run_ray

            result = run_ray(cfg, 2, folder)
        else:
            raise SystemExit(f"unknown contender {name!r} (known: {', '.join(CONTENDERS)})")
    result["seed"] = cfg["seed"]
    write_json(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
