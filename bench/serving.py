"""Serving figure: ``python -m bench.serving [--rounds 3] [--requests 200] [--concurrency 8] [--out DIR]``.

Starts what a user starts: a real ``mlflow server`` holding a registered champion (a small network
trained as loopback/models.py trains it; the figure is about serving, not accuracy), a one-node
``ray start`` cluster and ``mnist-job serve`` on it (loopback/serving.py). Then a bounded load
on loopback: ``--concurrency`` client threads, each with its own keep-alive HTTP connection, send
``--requests`` ``POST /predict`` requests per mode and round; modes ``single`` (one 28x28 test image
per request, JSON), ``batch64`` (64 images per request, JSON) and ``batch64_raw`` (the same 64 as raw
uint8 pixels, ``application/octet-stream``), interleaved (single, batch64, batch64_raw, single, ...).
Each mode's figure is the median over the rounds of requests/s, images/s and the p50/p99 latency.
Every answer is checked (status 200, one prediction per image, the right digits for most images).

Writes ``serving.json`` and ``serving.md`` (the section for bench/RESULTS.md) under ``--out``. Run it
in a loopback-only namespace like the tests: ``scripts/in-netns.sh .venv/bin/python -m bench.serving``
(``make bench-serving``). Timings on shared cores drift: compare within one run only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

PROJECT_DIR = Path(__file__).resolve().parents[1]
# mode: (images per request, body encoding)
MODES = {"single": (1, "json"), "batch64": (64, "json"), "batch64_raw": (64, "raw")}
CONTENT_TYPES = {"json": "application/json", "raw": "application/octet-stream"}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load_round(url: str, documents: list[tuple[bytes, str, np.ndarray]], requests: int, concurrency: int) -> dict:
    """``requests`` POST /predict spread over ``concurrency`` threads; latency of each, wall time of all."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    latencies: list[float] = []
    wrong: list[str] = []
    correct = images = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal correct, images
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body, content_type, labels = documents[i % len(documents)]
                start = time.perf_counter()
                connection.request("POST", "/predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                raw = response.read()
                elapsed = time.perf_counter() - start
                digits = ([p["digit"] for p in orjson.loads(raw)["predictions"]] if response.status == 200 else [])
                with lock:
                    latencies.append(elapsed)
                    if response.status != 200 or len(digits) != len(labels):
                        wrong.append(f"status {response.status}, {len(digits)} predictions for {len(labels)} "
                                     f"images: {raw[:200]!r}")
                    correct += int(np.sum(np.asarray(digits) == labels)) if len(digits) == len(labels) else 0
                    images += len(labels)
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if wrong:
        raise SystemExit(f"{len(wrong)} of {requests} requests failed; first: {wrong[0]}")
    return {"requests": requests, "images": images, "wall_s": wall, "requests_per_s": requests / wall,
            "images_per_s": images / wall, "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99), "accuracy": correct / images}


def documents_for(batch: int, encoding: str, images: np.ndarray, labels: np.ndarray,
                  count: int = 16) -> list[tuple[bytes, str, np.ndarray]]:
    """``count`` different (body, content type, labels) of ``batch`` test images each, as a client sends them:
    JSON pixels, or raw uint8 pixels."""
    out = []
    for k in range(count):
        chosen = slice(k * batch, (k + 1) * batch)
        pixels = images[chosen] if batch > 1 else images[k]
        body = json.dumps({"pixels": pixels.tolist()}).encode() if encoding == "json" else pixels.tobytes()
        out.append((body, CONTENT_TYPES[encoding], labels[chosen]))
    return out


def summarize(runs: list[dict]) -> dict:
    out = {}
    for mode, (batch, encoding) in MODES.items():
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {"batch": batch, "encoding": encoding, "rounds": len(mine),
                     **{key: statistics.median(r[key] for r in mine)
                        for key in ("requests_per_s", "images_per_s", "p50_ms", "p99_ms")},
                     "requests_per_s_range": [min(r["requests_per_s"] for r in mine),
                                              max(r["requests_per_s"] for r in mine)],
                     "accuracy": min(r["accuracy"] for r in mine)}
    return out


def write_markdown(result: dict, path: Path) -> None:
    m, c = result["machine"], result["config"]
    lines = [
        f"## Serving: `mnist-job serve` on one local Ray node ({result['started'][:10]})",
        "",
        f"`make bench-serving` (`python -m bench.serving`): the champion of a real MLflow server (a small network, "
        f"{result['model']['test_accuracy']:.2%} test accuracy) behind Ray Serve (`@serve.batch`, one replica, "
        f"{c['replica_cpus']} CPU), on a {c['ray_cpus']}-CPU `ray start` node, all on loopback. {c['concurrency']} "
        f"client threads with keep-alive connections, {c['requests']} `POST /predict` per mode and "
        f"round, {c['rounds']} interleaved rounds; medians over the rounds (requests/s: min-max). {m['cpus']} CPUs, "
        f"load average before {m['loadavg_before'][0]:.2f}, after {m['loadavg_after'][0]:.2f}."
        + (f" {result['note']}" if result.get("note") else ""),
        "",
        "| request | requests/s (min-max) | images/s | p50 latency (ms) | p99 latency (ms) |",
        "|---|---|---:|---:|---:|",
    ]
    for s in result["summary"].values():
        low, high = s["requests_per_s_range"]
        what = ("one image" if s["batch"] == 1 else f"batch of {s['batch']} images") + \
            (", JSON" if s["encoding"] == "json" else ", raw uint8 pixels")
        lines.append(f"| {what} | {s['requests_per_s']:.1f} ({low:.1f}-{high:.1f}) | {s['images_per_s']:.0f} "
                     f"| {s['p50_ms']:.1f} | {s['p99_ms']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "bench" / "results")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="per mode and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=20000, help="for the small network")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the small network's weights are kept (default: OUT/.cache)")
    parser.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""), help="a line for the report")
    args = parser.parse_args()
    for name in ("rounds", "requests", "concurrency", "ray_cpus", "train_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    sys.path.insert(0, str(PROJECT_DIR))
    from loopback import services
    from loopback.models import register, train_small_network
    from loopback.serving import serving

    dataset = PROJECT_DIR / "data" / "mnist"
    if not (dataset / "manifest.json").is_file():
        raise SystemExit("data/mnist is not prepared: run `make data` first")
    images, labels = np.load(dataset / "test_images.npy"), np.load(dataset / "test_labels.npy")
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    loadavg_before = os.getloadavg()
    network = train_small_network(dataset, args.cache or args.out / ".cache", images=args.train_images)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        mlflow = services.start_mlflow(root / "logs", root / "mlflow")
        try:
            model = register(mlflow.uri, network, dataset, root / "final", experiment="bench-serving")
            print(f"champion: version {model.version}, test accuracy {model.test_accuracy:.4f}", flush=True)
            with serving(root, mlflow.uri, cpus=args.ray_cpus) as served:
                bodies = {mode: documents_for(batch, encoding, images, labels)
                          for mode, (batch, encoding) in MODES.items()}
                for mode in MODES:  # warm-up: the first requests pay for lazy imports and the first batch
                    load_round(served.url, bodies[mode], min(args.requests, 2 * args.concurrency), args.concurrency)
                for round_ in range(1, args.rounds + 1):
                    for mode in MODES:
                        run = {"round": round_, "mode": mode,
                               **load_round(served.url, bodies[mode], args.requests, args.concurrency)}
                        runs.append(run)
                        print(f"round {round_} {mode:<8} {run['requests_per_s']:7.1f} requests/s "
                              f"{run['images_per_s']:7.0f} images/s  p50 {run['p50_ms']:6.1f} ms  "
                              f"p99 {run['p99_ms']:6.1f} ms", flush=True)
        finally:
            mlflow.stop()
    worst = min(r["accuracy"] for r in runs)
    if worst < 0.9:  # the small network scores about 96%: lower means the answers are wrong, not slow
        raise SystemExit(f"the served model answered only {worst:.1%} of the test images right")
    result = {
        "started": started,
        "note": args.note,
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()},
        "config": {"rounds": args.rounds, "requests": args.requests, "concurrency": args.concurrency,
                   "ray_cpus": args.ray_cpus, "replica_cpus": 1, "modes": MODES, "max_batch_size": 64},
        "model": {"version": model.version, "test_accuracy": model.test_accuracy},
        "runs": runs,
        "summary": summarize(runs),
    }
    (args.out / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out / "serving.md")
    print((args.out / "serving.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
