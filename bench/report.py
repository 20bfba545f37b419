"""latest.md (a Markdown table) and latest.png (accuracy vs time, throughput) from latest.json."""

from __future__ import annotations

from pathlib import Path


def _fmt(value, spec: str = ".1f", none: str = "not reached") -> str:
    return none if value is None else format(value, spec)


def write_markdown(result: dict, path: Path) -> None:
    target = result["config"]["target"]
    label = f"time to {target:.1%}"
    lines = [
        f"# Benchmark ({result['mode']} mode, {result['started']})",
        "",
        f"{result['machine']['cpus']} CPUs, {result['machine']['threads']} threads, torch {result['machine']['torch']}; "
        f"load average before {result['machine']['loadavg_before'][0]:.2f}, after "
        f"{result['machine']['loadavg_after'][0]:.2f}. Test set: "
        f"{result['config']['test_subset'] or 10000} images. GEMM samples (GFLOP/s): "
        + ", ".join(f"{g:.0f}" for g in result["gemm"]["gflops_samples"]),
        "",
        f"| contender | {label} (s) | epochs | train images/s | peak RSS (MB) | GEMM fraction | start-up (s) | final test acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in result["contenders"].items():
        lines.append(
            f"| {name}: {c['description']} | {_fmt(c['time_to_target_s'])} | {_fmt(c['epochs_to_target'], 'd', '-')} "
            f"| {c['train_images_per_s']:.0f} | {c['peak_rss_mb']:.0f} | {c['gemm_fraction']:.3f} "
            f"| {_fmt(c.get('startup_s'), '.1f', '-')} | {c['final_test_accuracy']:.4f} |")
    r = result["ratios"]
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|:--:|"]
    for key, t in result["targets"].items():
        met = "-" if t["met"] is None else ("yes" if t["met"] else "no")
        lines.append(f"| {key} | {_fmt(t['value'], '.3f', 'n/a')} | {t['target']} | {met} |")
    lines += ["", f"Speed-up basis: {r['speedup_basis']} (best project contender: {r['best_project_contender']}, "
                  f"{_fmt(r['speedup_vs_examples_best_project'], '.2f', 'n/a')}x). Ray overhead: {r['ray_overhead_basis']}; "
                  f"compute only (sum of epoch_time_s): {_fmt(r['ray_overhead_compute_only'], '.3f', 'n/a')}. "
                  f"GEMM fraction: the project's best ({r['gemm_fraction_basis']}); training FLOPs = 3 x forward."]
    d = result.get("dataset_ready")
    if d:
        runs = ", ".join(f"{x['seconds']:.2f}" for x in d["runs"])
        lines += ["", f"Dataset ready on a worker (dvc pull from moto S3 + verify + load, empty cache): "
                      f"**{d['seconds']:.2f} s** median (runs: {runs} s; target <= {d['target_s']} s)."]
    if result["failures"]:
        lines += ["", "Failures: " + "; ".join(f"{k}: {v}" for k, v in result["failures"].items())]
    if result["mode"] == "quick":
        lines += ["", "Quick mode: a subset and one epoch; the numbers check the harness, not the targets."]
    path.write_text("\n".join(lines) + "\n")


def write_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(result["contenders"])
    for name, c in result["contenders"].items():
        ax1.plot([e["elapsed_s"] for e in c["epochs"]], [100 * e["test_accuracy"] for e in c["epochs"]],
                 marker="o", label=name)
    ax1.axhline(100 * result["config"]["target"], color="grey", linestyle="--", linewidth=1)
    ax1.set_xlabel("training time (s, start-up excluded)")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title(f"test accuracy after each epoch ({result['mode']} mode)")
    ax1.legend()
    ips = [result["contenders"][n]["train_images_per_s"] for n in names]
    frac = [100 * result["contenders"][n]["gemm_fraction"] for n in names]
    bars = ax2.bar(names, ips, color="tab:blue")
    ax2.set_ylabel("training images / s")
    for bar, f in zip(bars, frac, strict=True):
        ax2.annotate(f"{f:.0f}% of GEMM", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                     ha="center", va="bottom", fontsize=8)
    ax2.set_title("throughput (label: achieved FLOP/s vs same-run GEMM)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
