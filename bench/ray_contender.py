"""The ``ray_2`` contender: the project's job, ``mnist_job.training.driver.run_training``, on a fresh local Ray.

MLflow in a temporary SQLite store, Ray's storage and the job's outputs in a temporary folder. The
job keeps only its last two checkpoints, so a watcher copies each as it appears and the benchmark
scores every epoch's model on the test set after the job has finished (untimed, off the clock).
Times are wall-clock timestamps (``time.time()``), comparable with the orchestrator's process start.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from bench.common import PROJECT_DIR, epoch_reporter, load_arrays, project_params, test_accuracy, test_tensors


class CheckpointCopier:
    """Copies every checkpoint file the job writes, as bytes (no unpickling while the job runs)."""

    def __init__(self, storage: Path, keep: Path, interval: float = 0.5):
        self.storage, self.keep, self.interval = storage, keep, interval
        self.keep.mkdir(parents=True, exist_ok=True)
        self.copies: list[Path] = []
        self._done: set[Path] = set()
        self._sizes: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.scan(final=True)

    def scan(self, final: bool = False) -> None:
        for path in sorted(self.storage.glob("**/checkpoint.pt")):
            if path in self._done:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            # copied once its size held still for one interval: Ray may still be writing it
            if not final and (size == 0 or self._sizes.get(path) != size):
                self._sizes[path] = size
                continue
            target = self.keep / f"{len(self.copies)}.pt"
            try:
                shutil.copyfile(path, target)
            except OSError:  # deleted by the job (it keeps two) before the copy: the next one follows
                continue
            self._done.add(path)
            self.copies.append(target)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()

    def by_epoch(self) -> dict[int, dict]:
        import torch

        states = {}
        for path in self.copies:
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # noqa: BLE001 (copied while half written: a later copy of that epoch follows)
                continue
            states[int(state["epoch"])] = state
        return states


def run_ray(cfg: dict, workers: int, tmp: Path) -> dict:
    import torch

    from mnist_job.core.config import Runtime
    from mnist_job.core.console import show_on_stdout
    from mnist_job.model.network import build_model, count_flops_per_image
    from mnist_job.tracking.client import mlflow_client
    from mnist_job.training.driver import run_training
    from mnist_job.training.ray_cluster import init_ray

    params = project_params(cfg, [f"train.num_workers={workers}", f"train.storage_path={tmp / 'ray'}",
                                  f"train.output_dir={tmp / 'outputs'}", f"train.run_name=bench-ray-{workers}w",
                                  "mlflow.experiment=bench"])
    runtime = Runtime(project_dir=PROJECT_DIR, tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    (tmp / "ray").mkdir()
    copier = CheckpointCopier(tmp / "ray", tmp / "kept").start()
    t0 = time.time()
    init_ray(runtime)
    t_init = time.time()
    show_on_stdout()
    result = run_training(params, runtime)
    t_done = time.time()  # run_training returns once the model is written to <output_dir>/model
    copier.stop()
    import ray

    ray.shutdown()

    client = mlflow_client(runtime.tracking_uri)
    history = {m.step: m for m in client.get_metric_history(result.run_id, "epoch_time_s")}
    ips = {m.step: m.value for m in client.get_metric_history(result.run_id, "images_per_s")}
    states = copier.by_epoch()
    data = load_arrays()
    test_x, test_y = test_tensors(data, cfg["test_subset"])
    torch.set_num_threads(cfg["threads"])
    epochs: list[dict] = []
    report = epoch_reporter(epochs, f"ray_{workers}")
    first = history[min(history)]
    # rank 0 logs an epoch's metrics epoch_time_s after the epoch began (after its checkpoint upload)
    first_epoch_start = first.timestamp / 1000 - first.value
    local_batch = max(1, params.train.batch_size // workers)
    n_train = (params.data.train_subset or 60000) - params.data.validation_size
    images = ((n_train // workers) // local_batch) * local_batch * workers  # as run_epoch counts them
    flops = None
    for epoch in sorted(history):
        model = build_model(**states[epoch]["model_params"])
        model.load_state_dict(states[epoch]["model"])
        flops = flops or count_flops_per_image(model)
        # wall time from the first epoch's start to this epoch's metrics: checkpointing and logging count
        elapsed = history[epoch].timestamp / 1000 - first_epoch_start
        report({"epoch": epoch, "train_s": images / ips[epoch], "epoch_s": history[epoch].value,
                "elapsed_s": elapsed, "compute_elapsed_s": sum(history[e].value for e in history if e <= epoch),
                "images": images, "images_per_s": ips[epoch], "test_accuracy": test_accuracy(model, test_x, test_y)})
    run_json = json.loads((tmp / "outputs" / "run.json").read_text())
    return {"epochs": epochs, "workers": workers, "threads_per_worker": max(1, cfg["threads"] // workers),
            "flops_per_image_forward": flops, "model_written_at": t_done, "scoring_s": 0.0,
            "first_epoch_start_at": first_epoch_start,
            "ray": {"ray_init_s": t_init - t0, "fit_wall_s": run_json["fit_wall_s"],
                    "after_last_epoch_s": t_done - history[max(history)].timestamp / 1000},
            "test_accuracy_job": result.test_accuracy, "registered": result.registered}
