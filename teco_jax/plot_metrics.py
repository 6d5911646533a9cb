"""Plot training curves from a workdir's metrics.jsonl (or several workdirs, overlaid).

    python -m teco_jax.plot_metrics runs/vqgan --keys train/psnr eval/psnr --out docs/vqgan_curve.png

Each key gets its own panel; train metrics are smoothed with a running mean over
`--smooth` logged points, eval metrics are drawn as points joined by lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def read_metrics(workdir: Path | str) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (is {workdir} a training workdir?)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i + 1}: not JSON ({e})") from None
    return rows


def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric; a later row for the same step (after a resume) wins."""
    by_step = {int(r["step"]): float(r[key]) for r in rows if key in r}
    steps = np.array(sorted(by_step), np.int64)
    return steps, np.array([by_step[s] for s in steps], np.float64)


def running_mean(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or len(x) < n:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    head = c[1:n] / np.arange(1, n)
    return np.concatenate([head, (c[n:] - c[:-n]) / n])


def plot(workdirs: list[str], keys: list[str], out: Path, smooth: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for workdir in workdirs:
        rows = read_metrics(workdir)
        for ax, key in zip(axes[0], keys):
            steps, values = series(rows, key)
            if not len(steps):
                continue
            if key.startswith("eval/"):
                ax.plot(steps, values, "o-", label=Path(workdir).name)
            else:
                ax.plot(steps, running_mean(values, smooth), label=Path(workdir).name)
    for ax, key in zip(axes[0], keys):
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if len(workdirs) > 1:
        axes[0][0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdirs", nargs="+", help="training workdirs (each with metrics.jsonl)")
    p.add_argument("--keys", nargs="+", required=True, help="metric names, e.g. train/loss eval/psnr")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--smooth", type=int, default=8, help="running mean over this many logged train points")
    args = p.parse_args(argv)
    plot(args.workdirs, args.keys, args.out, args.smooth)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
