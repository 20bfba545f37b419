"""Micro-benchmarks of the project's training step: what would raise its FLOP/s and lower time to 99%.

    python -m bench.micro [--rounds 3] [--steps 8] [--out bench/results/micro.json]

Each variant (width, batch, threads, memory layout, mkldnn, optimizer implementation)
trains ``steps`` steps of the project's model on random data; the variants are run
round-robin, each round with its own GEMM sample, and reported as the median over
rounds of (variant images/s / baseline images/s in the same round), so machine-wide
speed drift cancels out. Also profiles the baseline step to show where time goes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.common import gemm_gflops, write_json

BASE = {"width": 32, "batch": 256, "threads": 2, "channels_last": True, "mkldnn": True, "adamw": "default"}
VARIANTS = {
    "baseline (w32, b256, 2 threads, channels_last)": {},
    "NCHW (contiguous)": {"channels_last": False},
    "mkldnn off": {"mkldnn": False},
    "AdamW fused": {"adamw": "fused"},
    "batch 128": {"batch": 128},
    "batch 512": {"batch": 512},
    "width 16": {"width": 16},
    "width 24": {"width": 24},
    "width 48": {"width": 48},
    "1 thread, batch 128 (a Ray worker of 2)": {"threads": 1, "batch": 128},
    "1 thread, batch 256": {"threads": 1},
}


class Variant:
    def __init__(self, spec: dict):
        from mnist_job.model.network import MnistCNN, count_flops_per_image

        self.spec = spec
        torch.manual_seed(0)
        model = MnistCNN(spec["width"], 0.1)
        fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
        self.model = model.to(memory_format=fmt)
        kwargs = {"fused": True} if spec["adamw"] == "fused" else {}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, **kwargs)
        self.x = torch.randn(spec["batch"], 1, 28, 28).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (spec["batch"],))
        self.flops = 3 * count_flops_per_image(self.model)

    def step(self) -> None:
        loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def images_per_s(self, steps: int) -> float:
        torch.set_num_threads(self.spec["threads"])
        torch.backends.mkldnn.enabled = self.spec["mkldnn"]
        try:
            self.step()  # warm-up (and re-warm after another variant ran)
            t0 = time.perf_counter()
            for _ in range(steps):
                self.step()
            return steps * self.spec["batch"] / (time.perf_counter() - t0)
        finally:
            torch.backends.mkldnn.enabled = True


def profile_baseline(steps: int = 5) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    v = Variant(BASE)
    torch.set_num_threads(BASE["threads"])
    v.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            v.step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in rows[:12]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--only", nargs="*", help="variant names (substring match)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/micro.json"))
    args = ap.parse_args(argv)

    names = [n for n in VARIANTS if not args.only or any(s in n for s in args.only)]
    base_name = next(iter(VARIANTS))
    if base_name not in names:
        names.insert(0, base_name)
    variants = {n: Variant({**BASE, **VARIANTS[n]}) for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    fractions: dict[str, list[float]] = {n: [] for n in names}
    gemms = {1: [], 2: []}
    for r in range(args.rounds):
        g = {t: gemm_gflops(t, seconds=1.5) for t in (1, 2)}
        for t in g:
            gemms[t].append(g[t])
        base = variants[base_name].images_per_s(args.steps)
        samples[base_name].append(base)
        for n in names:
            ips = base if n == base_name else variants[n].images_per_s(args.steps)
            if n != base_name:
                samples[n].append(ips)
            ratios[n].append(ips / base)
            # fraction of the machine: a 1-thread variant is compared with a 2-thread GEMM (both cores)
            fractions[n].append(variants[n].flops * ips / 1e9 / g[2])
        print(f"[micro] round {r + 1}: gemm {g[1]:.0f}/{g[2]:.0f} GFLOP/s (1/2 threads), baseline {base:.0f} img/s",
              flush=True)
    rows = {}
    for n in names:
        rows[n] = {"spec": {**BASE, **VARIANTS[n]}, "images_per_s_median": statistics.median(samples[n]),
                   "vs_baseline_median": statistics.median(ratios[n]),
                   "gemm_fraction_median": statistics.median(fractions[n]),
                   "train_mflops_per_image": variants[n].flops / 1e6}
        print(f"[micro] {n:45s} {rows[n]['images_per_s_median']:7.0f} img/s  x{rows[n]['vs_baseline_median']:.2f}  "
              f"GEMM fraction {rows[n]['gemm_fraction_median']:.3f}  ({rows[n]['train_mflops_per_image']:.1f} MFLOP/img)",
              flush=True)
    prof = profile_baseline()
    for p in prof:
        print(f"[micro] profile {p['op']:40s} {100 * p['self_cpu_share']:5.1f}%", flush=True)
    write_json(args.out, {"rounds": args.rounds, "steps": args.steps, "gemm_gflops": gemms, "variants": rows,
                          "baseline_profile": prof})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
