""""Dataset ready on a worker": DVC-push data/mnist to a moto S3 on loopback, then time
``mnist_job.data.dvc_store.ensure_dataset`` (dvc pull + verify) + ``load_dataset`` (verify + load)
into an empty MNIST_DATA_CACHE, as a worker pod does.

``python -m bench.dataset_ready REPEATS OUT_JSON``; needs loopback only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PROJECT_DIR, write_json

BUCKET = "dvc-bench"


def push(workspace: Path, endpoint: str, env: dict) -> float:
    """The pull's DVC workspace, with the project's cache (it holds the dataset); push data/mnist."""
    from mnist_job.data.dvc_store import dvc_executable, write_pull_workspace

    workspace.mkdir(parents=True)
    # borrow the project's cache: it holds the dataset
    write_pull_workspace(PROJECT_DIR, workspace, "data/mnist", f"s3://{BUCKET}/store", endpoint,
                         PROJECT_DIR / ".dvc" / "cache")
    t0 = time.perf_counter()
    done = subprocess.run([dvc_executable(), "push", "data/mnist.dvc"], cwd=workspace, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc push failed: {done.stdout}\n{done.stderr}")
    return time.perf_counter() - t0


def measure(endpoint: str, cache: Path) -> dict:
    from mnist_job.core.config import DataParams, Runtime
    from mnist_job.data import dvc_store
    from mnist_job.data import format as dataset

    steps: dict[str, float] = {}
    real_pull, real_verify = dvc_store.dvc_pull, dataset.verify_dataset

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    dvc_store.dvc_pull = timed("dvc_pull_s", real_pull)
    dataset.verify_dataset = dvc_store.verify_dataset = timed("verify_s", real_verify)
    try:
        t0 = time.perf_counter()
        runtime = Runtime(project_dir=PROJECT_DIR, data_cache=cache, dvc_remote_url=f"s3://{BUCKET}/store",
                          s3_endpoint=endpoint)
        folder = dvc_store.ensure_dataset(DataParams(), runtime)
        t_ensure = time.perf_counter() - t0
        data = dataset.load_dataset(folder)
        total = time.perf_counter() - t0
    finally:
        dvc_store.dvc_pull, dataset.verify_dataset, dvc_store.verify_dataset = real_pull, real_verify, real_verify
    assert len(data.train_labels) == 60000 and len(data.test_labels) == 10000
    return {"seconds": total, "ensure_dataset_s": t_ensure, "load_dataset_s": total - t_ensure, **steps}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(PROJECT_DIR))
    from loopback.services import TEST_ACCESS_KEY, TEST_SECRET_KEY, start_s3

    repeats, out = int(argv[0]), Path(argv[1])
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    s3 = start_s3(tmp / "logs")
    try:
        s3.create_buckets(BUCKET)
        creds = {"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
                 "AWS_DEFAULT_REGION": "us-east-1", "DVC_NO_ANALYTICS": "1"}
        os.environ.update(creds)  # the pull is a dvc subprocess of ensure_dataset: it reads these
        push_s = push(tmp / "push", s3.endpoint, {**os.environ})
        runs = []
        for i in range(repeats):
            cache = tmp / f"cache-{i}"  # empty every time
            runs.append(measure(s3.endpoint, cache))
            shutil.rmtree(cache, ignore_errors=True)
            print(f"[bench] dataset ready run {i + 1}: {runs[-1]['seconds']:.2f} s "
                  f"(dvc pull {runs[-1].get('dvc_pull_s', 0):.2f} s, verify {runs[-1].get('verify_s', 0):.2f} s)",
                  flush=True)
        write_json(out, {"seconds": statistics.median(r["seconds"] for r in runs), "runs": runs,
                         "push_s": push_s, "bytes": sum(p.stat().st_size for p in (PROJECT_DIR / "data/mnist").iterdir())})
    finally:
        s3.process.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
