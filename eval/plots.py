"""PNG plots of benchmark results (matplotlib, Agg backend: no display needed).

    horizon_<metric>.png  metric vs frame index, one line per method, ± std over groups shaded
    revisit.png           per metric: revisited vs new places, one pair of bars per method
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.report import HEADERS, METRICS, method_name, revisit_sides

SIDE_COLORS = {"revisited": "tab:blue", "memory": "tab:green", "new": "tab:orange"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def horizon_plot(results: dict, metric: str, path: Path) -> None:
    """metric of every method vs the predicted frame's index in the episode."""
    plt = _pyplot()
    x = np.asarray(results["curves"]["frame_index"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for method in results["methods"]:
        c = results["curves"][method][metric]
        mean, std = np.asarray(c["mean"]), np.asarray(c["std"])
        ax.plot(x, mean, label=method_name(method, results), lw=1.5)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    p = results["protocol"]
    ax.set_xlabel(f"frame index (context: frames 0..{p['context'] - 1})")
    ax.set_ylabel(HEADERS[metric])
    ax.set_title(f"{HEADERS[metric]} per predicted frame, {p['num_videos']} videos (± std over groups)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def revisit_plot(results: dict, path: Path) -> None:
    """Bars: each metric for revisited and new places, per method (± std over groups)."""
    plt = _pyplot()
    rv = results["revisit"]
    methods = results["methods"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4))
    x = np.arange(len(methods))
    for ax, metric in zip(axes, METRICS):
        sides = revisit_sides(rv)
        width = 0.8 / len(sides)
        for i, side in enumerate(sides):
            shift = (i - (len(sides) - 1) / 2) * width
            stats = [rv["methods"][m][metric][side] for m in methods]
            mean = [np.nan if s["mean"] is None else s["mean"] for s in stats]
            std = [0.0 if s["std"] is None else s["std"] for s in stats]
            ax.bar(x + shift, mean, width, yerr=std, capsize=3, color=SIDE_COLORS[side],
                   label=f"{side} ({stats[0]['frames']} frames)")
        ax.set_xticks(x, [method_name(m, results) for m in methods], rotation=20, ha="right", fontsize=7)
        ax.set_title(HEADERS[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(results: dict, out: Path) -> list[str]:
    """Every plot the results allow, into `out`; returns the file names."""
    names = []
    for metric in METRICS:
        name = f"horizon_{metric}.png"
        horizon_plot(results, metric, out / name)
        names.append(name)
    if results["revisit"].get("available"):
        revisit_plot(results, out / "revisit.png")
        names.append("revisit.png")
    return names
