"""The single-process training loop of the default recipe and fast-recipe candidates, on one GPU.

For the lent GPU machine, which has PyTorch and NumPy but neither Ray nor MLflow: it uses only the
project's model and per-epoch loop (mnist_job/model/network.py, mnist_job/training/epoch.py) and the prepared
dataset, checksum-verified here against its manifest. Every recipe is a fixed schedule run over
several seeds; a recipe "reaches 99%" when the MEAN final test accuracy over the seeds is >= 0.99,
and its time to 99% is the wall time of that whole schedule (validation passes included).

    python -m bench.gpu_recipes --data data/mnist --out results.json [--seeds 5] [--recipes final|candidates] [--quick]

`final` (the default) runs what ships: params.yaml and mnist_job/presets/fast.yaml (tests/bench/test_gpu_recipes.py
checks that the two tuples below still match those files); `candidates` runs the one-epoch candidates the fast
preset was chosen from; `versus-examples` runs the fast preset and the pytorch/examples recipe
(bench/examples_recipe.py, as that example runs on an accelerator) seed by seed, for the ratio of their times to 99%.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mnist_job.model.network import build_model, images_to_tensor
from mnist_job.training.epoch import run_epoch, score, shard_indices, split_train_validation

# (name, epochs, width, dropout, batch, optimizer, lr, weight decay, validation images held out)
DEFAULT = ("default", 5, 32, 0.1, 256, "adamw", 0.004, 1e-4, 5000)  # params.yaml
FAST = ("fast", 1, 32, 0.0, 128, "adam-fast", 0.01, 0.0, 5000)  # --preset fast (AdamW without decay is Adam)
FAST_CANDIDATES = [
    ("fast-w32-adam", 1, 32, 0.0, 256, "adam-fast", 0.01, 0.0, 5000),
    ("fast-w48-adam", 1, 48, 0.0, 256, "adam-fast", 0.01, 0.0, 5000),
    ("fast-w64-adam", 1, 64, 0.0, 256, "adam-fast", 0.01, 0.0, 5000),
    ("fast-w32-adam-lr02", 1, 32, 0.0, 256, "adam-fast", 0.02, 0.0, 5000),
    ("fast-w32-adam-b128", 1, 32, 0.0, 128, "adam-fast", 0.01, 0.0, 5000),
    ("fast-w64-adam-b128", 1, 64, 0.0, 128, "adam-fast", 0.01, 0.0, 5000),
    ("fast-w32-adamw", 1, 32, 0.0, 256, "adamw", 0.01, 1e-4, 5000),
    ("fast-w64-adam-all", 1, 64, 0.0, 256, "adam-fast", 0.01, 0.0, 500),
]


def load_verified(folder: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {}
    for name, entry in manifest["files"].items():
        blob = (folder / name).read_bytes()
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise SystemExit(f"{folder / name} fails its checksum")
        arrays[name.removesuffix(".npy")] = np.load(folder / name, allow_pickle=False)
    return arrays


def optimizer_for(kind: str, model, lr: float, weight_decay: float, total_steps: int):
    if kind == "adam-fast":  # the public one-epoch records: Adam, high lr, short-memory betas
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.7, 0.9))
    else:  # what mnist_job/training/loop.py uses
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)


def run_recipe(recipe: tuple, seed: int, data: dict, device: torch.device, train_subset: int) -> dict:
    name, epochs, width, dropout, batch, kind, lr, weight_decay, validation = recipe
    (train_x, train_y), (val_x, val_y) = split_train_validation(data["train_images"], data["train_labels"],
                                                                 validation, train_subset)
    x, y = torch.as_tensor(train_x).to(device), torch.as_tensor(train_y.astype(np.int64), device=device)
    vx, vy = images_to_tensor(val_x, device), torch.as_tensor(val_y.astype(np.int64), device=device)
    tx = images_to_tensor(data["test_images"], device)
    ty = torch.as_tensor(data["test_labels"].astype(np.int64), device=device)
    torch.manual_seed(seed)
    model = build_model(width, dropout).to(device)
    optimizer, scheduler = optimizer_for(kind, model, lr, weight_decay, epochs * (len(x) // batch))
    synchronize(device)
    started = time.perf_counter()
    seen = 0
    for epoch in range(1, epochs + 1):
        shard = shard_indices(len(x), epoch, seed, 0, 1)
        _, _, images = run_epoch(model, optimizer, scheduler, x, y, shard, batch)
        score(model, vx, vy)  # the recipe's own validation pass counts, as in the job
        seen += images
    synchronize(device)
    wall = time.perf_counter() - started
    _, correct, count = score(model, tx, ty)
    return {"recipe": name, "seed": seed, "wall_s": wall, "images_per_s": seen / wall, "test_accuracy": correct / count}


def run_examples(seed: int, data: dict, device: torch.device, epochs: int, train_subset: int) -> dict:
    """The pytorch/examples recipe (bench/examples_recipe.py) on ``device``, as that example runs on an
    accelerator; its per-epoch test accuracy is untimed, its time the cumulative training time per epoch."""
    from types import SimpleNamespace

    from bench import examples_recipe

    per_epoch: list[dict] = []
    test_x = examples_recipe.normalised_tensor(data["test_images"]).to(device)
    test_y = torch.as_tensor(data["test_labels"].astype(np.int64), device=device)
    examples_recipe.run({"seed": seed, "epochs": epochs, "train_subset": train_subset}, SimpleNamespace(**data),
                        test_x, test_y, per_epoch.append, device=device)
    images = sum(e["images"] for e in per_epoch)
    return {"recipe": "examples", "seed": seed, "images_per_s": images / per_epoch[-1]["elapsed_s"],
            "epochs": [{k: e[k] for k in ("epoch", "elapsed_s", "test_accuracy")} for e in per_epoch]}


def summarize_examples(runs: list[dict], fast_runs: list[dict]) -> dict:
    """The examples recipe's fixed schedule (the first epoch whose MEAN test accuracy is >= 0.99), its time to 99%
    (median cumulative time to that epoch) and, seed by seed, that time over the fast preset's wall time."""
    epochs = len(runs[0]["epochs"])
    means = [statistics.fmean(r["epochs"][e]["test_accuracy"] for r in runs) for e in range(epochs)]
    reached = next((e for e, mean in enumerate(means) if mean >= 0.99), None)
    summary = {"seeds": len(runs), "mean_test_accuracy_per_epoch": means,
               "median_images_per_s": statistics.median(r["images_per_s"] for r in runs),
               "schedule_epochs": None if reached is None else reached + 1, "time_to_99_s": None, "ratios": []}
    if reached is not None:
        times = [r["epochs"][reached]["elapsed_s"] for r in runs]
        summary["time_to_99_s"] = statistics.median(times)
        summary["ratios"] = [t / f["wall_s"] for t, f in zip(times, fast_runs, strict=True)]
        summary["median_ratio_over_fast"] = statistics.median(summary["ratios"])
    return summary


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def summarize(runs: list[dict]) -> dict:
    accuracy = [r["test_accuracy"] for r in runs]
    wall = [r["wall_s"] for r in runs]
    mean = statistics.fmean(accuracy)
    return {"seeds": len(runs), "mean_test_accuracy": mean, "min_test_accuracy": min(accuracy),
            "max_test_accuracy": max(accuracy), "median_wall_s": statistics.median(wall),
            "min_wall_s": min(wall), "max_wall_s": max(wall),
            "median_images_per_s": statistics.median(r["images_per_s"] for r in runs),
            "reaches_99": mean >= 0.99, "time_to_99_s": statistics.median(wall) if mean >= 0.99 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/mnist"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--recipes", choices=("final", "candidates", "versus-examples"), default="final",
                        help="final: default and --preset fast; candidates: the one-epoch candidates; "
                             "versus-examples: --preset fast and the pytorch/examples recipe, seed by seed")
    parser.add_argument("--examples-epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 training images, one seed")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    data = load_verified(args.data)
    seeds = range(1 if args.quick else args.seeds)
    subset = 2000 if args.quick else 0
    recipes = [DEFAULT, *FAST_CANDIDATES] if args.recipes == "candidates" else [DEFAULT, FAST]
    if args.quick:
        recipes = [(r[0], 1, *r[2:8], min(r[8], 500)) for r in recipes[:2]]
    run_recipe(recipes[0], 12345, data, device, subset or 10000)  # warm-up: cuDNN autotuning, allocator
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "recipes": {}, "runs": []}
    if args.recipes == "versus-examples":
        versus_examples(results, data, device, seeds, subset, 1 if args.quick else args.examples_epochs, recipes[1])
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        return
    for recipe in recipes:
        runs = [run_recipe(recipe, seed, data, device, subset) for seed in seeds]
        results["runs"] += runs
        results["recipes"][recipe[0]] = {"config": dict(zip(("name", "epochs", "width", "dropout", "batch",
                                                             "optimizer", "lr", "weight_decay", "validation"),
                                                            recipe, strict=True)), **summarize(runs)}
        summary = results["recipes"][recipe[0]]
        print(f"{recipe[0]:<22} mean acc {summary['mean_test_accuracy']:.4f} "
              f"({summary['min_test_accuracy']:.4f}-{summary['max_test_accuracy']:.4f}) "
              f"wall {summary['median_wall_s']:.2f} s  {summary['median_images_per_s']:.0f} img/s", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


def versus_examples(results: dict, data: dict, device: torch.device, seeds, subset: int, epochs: int,
                    fast: tuple) -> None:
    """Seed by seed, the fast preset then the examples recipe, so a drift of the machine hits both alike."""
    run_examples(12345, data, device, 1, 2000)  # warm-up: the examples network's cuDNN autotuning
    fast_runs, example_runs = [], []
    for seed in seeds:
        fast_runs.append(run_recipe(fast, seed, data, device, subset))
        example_runs.append(run_examples(seed, data, device, epochs, subset))
    results["runs"] = fast_runs + example_runs
    results["recipes"]["fast"] = summarize(fast_runs)
    results["recipes"]["examples"] = summarize_examples(example_runs, fast_runs)
    examples = results["recipes"]["examples"]
    print(f"fast: mean acc {results['recipes']['fast']['mean_test_accuracy']:.4f}, "
          f"wall {results['recipes']['fast']['median_wall_s']:.2f} s; examples: mean acc per epoch "
          f"{[round(m, 4) for m in examples['mean_test_accuracy_per_epoch']]}, time to 99% "
          f"{examples['time_to_99_s']} s, ratio per seed {[round(r, 1) for r in examples['ratios']]}", flush=True)


if __name__ == "__main__":
    main()
