"""One contender per process: ``python -m bench.contenders NAME CONFIG_JSON OUT_JSON``.

Every contender trains, and after each epoch scores the same test set (untimed),
and writes per-epoch records: epoch, train_s (pure training), epoch_s (what the
recipe spends per epoch, e.g. the project's validation pass), elapsed_s
(cumulative recipe time up to the end of that epoch), images, test_accuracy.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import PROJECT_DIR, load_arrays, test_accuracy, test_tensors, write_json


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def _reporter(epochs: list[dict], name: str):
    def report(record: dict) -> None:
        epochs.append(record)
        _say(f"{name} epoch {record['epoch']}: test_acc={record['test_accuracy']:.4f} "
             f"train={record['train_s']:.1f}s elapsed={record['elapsed_s']:.1f}s "
             f"images/s={record['images_per_s']:.0f}")
    return report


def run_examples(cfg: dict) -> dict:
    import torch

    from bench.examples_recipe import run
    from mnist_job.model.network import count_flops_per_image

    torch.set_num_threads(cfg["threads"])
    data = load_arrays()
    test_x, test_y = test_tensors(data, cfg["test_subset"])
    epochs: list[dict] = []
    extra = run(cfg, data, test_x, test_y, _reporter(epochs, "examples"))
    return {"epochs": epochs, "threads": cfg["threads"], "flops_per_image_forward": count_flops_per_image(extra["model"]),
            "recipe": extra["recipe"]}


def project_params(cfg: dict, overrides: list[str] = ()):
    """params.yaml with the benchmark's overrides (quick mode: a subset, one epoch)."""
    from mnist_job.core.config import load_params

    sets = list(overrides)
    if cfg["train_subset"]:
        sets += [f"data.train_subset={cfg['train_subset']}", f"data.validation_size={cfg['validation_size']}"]
    if cfg.get("project_epochs"):
        sets.append(f"train.epochs={cfg['project_epochs']}")
    sets.append(f"data.test_subset={cfg['test_subset']}")
    return load_params(PROJECT_DIR / "params.yaml", sets)


def run_project_single(cfg: dict) -> dict:
    """The project's model and recipe in one process, world size 1, with the project's own functions."""
    import torch

    from mnist_job.model.network import build_model, count_flops_per_image, images_to_tensor
    from mnist_job.training.loop import run_epoch, score, shard_indices, split_train_validation

    params = project_params(cfg, cfg.get("overrides", []))  # e.g. a preset's settings (bench/preset_rounds.py)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(params.train.seed)
    data = load_arrays()
    test_x, test_y = test_tensors(data, cfg["test_subset"])
    (train_x, train_y), (val_x, val_y) = split_train_validation(
        data.train_images, data.train_labels, params.data.validation_size, params.data.train_subset)
    x, y = images_to_tensor(train_x), torch.as_tensor(train_y.astype(np.int64))
    vx, vy = images_to_tensor(val_x), torch.as_tensor(val_y.astype(np.int64))
    model = build_model(params.model.width, params.model.dropout)
    batch = params.train.batch_size
    steps = len(x) // batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.learning_rate,
                                  weight_decay=params.train.weight_decay, betas=tuple(params.train.adam_betas))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.train.learning_rate,
                                                    total_steps=params.train.epochs * steps)
    epochs: list[dict] = []
    report = _reporter(epochs, "project_single")
    elapsed = 0.0
    for epoch in range(1, params.train.epochs + 1):
        t0 = time.perf_counter()
        shard = shard_indices(len(x), epoch, params.train.seed, 0, 1)
        _, _, seen = run_epoch(model, optimizer, scheduler, x, y, shard, batch)
        train_s = time.perf_counter() - t0
        score(model, vx, vy)  # the recipe's per-epoch validation pass, as in train_loop
        epoch_s = time.perf_counter() - t0
        elapsed += epoch_s
        report({"epoch": epoch, "train_s": train_s, "epoch_s": epoch_s, "elapsed_s": elapsed, "images": seen,
                "images_per_s": seen / train_s, "test_accuracy": test_accuracy(model, test_x, test_y)})
    return {"epochs": epochs, "threads": cfg["threads"], "flops_per_image_forward": count_flops_per_image(model),
            "params": params.flat()}


class CheckpointWatcher:
    """Keeps a copy of every epoch's checkpoint: the job keeps only the last two (num_to_keep=2)."""

    def __init__(self, storage: Path, keep: Path, interval: float = 0.5):
        self.storage, self.keep, self.interval = storage, keep, interval
        self.keep.mkdir(parents=True, exist_ok=True)
        self.epochs: dict[int, Path] = {}
        self.seen_at: dict[int, float] = {}
        self._done: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()

    def scan(self) -> None:
        import torch

        for path in sorted(self.storage.glob("**/checkpoint.pt")):
            if path in self._done:
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # noqa: BLE001 (still being written, or already deleted: next scan)
                continue
            epoch = int(state["epoch"])
            self._done.add(path)
            if epoch not in self.epochs:
                target = self.keep / f"epoch-{epoch}.pt"
                torch.save({"model": state["model"], "model_params": state["model_params"], "epoch": epoch}, target)
                self.epochs[epoch], self.seen_at[epoch] = target, time.time()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()


def run_ray(cfg: dict, workers: int) -> dict:
    """The project's Ray Train job (mnist_job.training.driver.run_training) on a fresh local Ray, MLflow in temp SQLite."""
    import torch
    from mlflow import MlflowClient

    from mnist_job.core.config import Runtime
    from mnist_job.core.console import show_on_stdout
    from mnist_job.model.network import build_model, count_flops_per_image
    from mnist_job.training.driver import init_ray, run_training

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-ray{workers}-"))
    try:
        params = project_params(cfg, [f"train.num_workers={workers}", f"train.storage_path={tmp / 'ray'}",
                                      f"train.output_dir={tmp / 'outputs'}", f"train.run_name=bench-ray-{workers}w",
                                      "mlflow.experiment=bench"])
        runtime = Runtime(project_dir=PROJECT_DIR, tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
        (tmp / "ray").mkdir()
        watcher = CheckpointWatcher(tmp / "ray", tmp / "kept").start()
        t0 = time.time()
        init_ray(runtime)
        t_init = time.time()
        show_on_stdout()
        result = run_training(params, runtime)
        t_done = time.time()
        watcher.stop()
        import ray

        ray.shutdown()

        client = MlflowClient(tracking_uri=runtime.tracking_uri)
        history = {m.step: m for m in client.get_metric_history(result.run_id, "epoch_time_s")}
        ips = {m.step: m.value for m in client.get_metric_history(result.run_id, "images_per_s")}
        run_json = json.loads((tmp / "outputs" / "run.json").read_text())
        data = load_arrays()
        test_x, test_y = test_tensors(data, cfg["test_subset"])
        torch.set_num_threads(cfg["threads"])
        epochs: list[dict] = []
        report = _reporter(epochs, f"ray_{workers}")
        first = history[min(history)]
        # the first epoch began epoch_time_s before rank 0 logged it (logging follows the checkpoint upload)
        first_epoch_start = first.timestamp / 1000 - first.value
        local_batch = max(1, params.train.batch_size // workers)
        images = ((len_train(params) // workers) // local_batch) * local_batch * workers  # as run_epoch counts
        flops = None
        for epoch in sorted(history):
            state = torch.load(watcher.epochs[epoch], map_location="cpu", weights_only=False)
            model = build_model(**state["model_params"])
            model.load_state_dict(state["model"])
            flops = flops or count_flops_per_image(model)
            epoch_s = history[epoch].value
            # wall time from the first epoch's start to this epoch's metrics: includes checkpointing and logging
            elapsed = history[epoch].timestamp / 1000 - first_epoch_start
            report({"epoch": epoch, "train_s": images / ips[epoch], "epoch_s": epoch_s, "elapsed_s": elapsed,
                    "compute_elapsed_s": sum(history[e].value for e in history if e <= epoch),
                    "images": images, "images_per_s": ips[epoch],
                    "test_accuracy": test_accuracy(model, test_x, test_y)})
        return {"epochs": epochs, "workers": workers, "threads_per_worker": max(1, cfg["threads"] // workers),
                "flops_per_image_forward": flops,
                "startup": {"ray_init_s": t_init - t0, "until_first_epoch_s": first_epoch_start - t0,
                            "fit_wall_s": run_json["fit_wall_s"], "total_wall_s": t_done - t0,
                            "after_last_epoch_s": t_done - history[max(history)].timestamp / 1000},
                "test_accuracy_job": result.test_accuracy, "registered": result.registered}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def len_train(params) -> int:
    n = params.data.train_subset or 60000  # the prepared dataset's 60,000 training images
    return n - params.data.validation_size


def main(argv: list[str]) -> int:
    name, cfg, out = argv[0], json.loads(argv[1]), Path(argv[2])
    t0 = time.time()
    if name == "examples":
        result = run_examples(cfg)
    elif name == "project_single":
        result = run_project_single(cfg)
    elif name in ("ray_1", "ray_2"):
        result = run_ray(cfg, int(name[-1]))
    else:
        raise SystemExit(f"unknown contender {name!r}")
    result["process_wall_s"] = time.time() - t0
    write_json(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
