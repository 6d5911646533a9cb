"""One episode's returns at a glance: its path seen from above, and frames of places it came
back to beside the earlier frame that showed the same place.

    python scripts/revisit_sheet.py runs/voxel/train/ep_000000.npz --out docs/voxel_returns.png

Works on any generator's episodes (the npz needs `video` and `pose` [x, y, heading]). A frame
t >= --split revisits when it stands in a column seen before --split with a heading within 45
degrees (`teco_jax.revisit`); the sheet shows --pairs of them, evenly spread, each beside the
earlier frame nearest to its pose.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from teco_jax.revisit import revisit_mask, wrap_angle  # noqa: E402


def earlier_view(pose: np.ndarray, t: int, split: int, max_angle_deg: float = 45.0) -> int:
    """Of the frames before `split` in frame t's column with a heading within max_angle_deg, the
    one nearest to frame t's pose (distance squared + (half the heading difference) squared)."""
    cell = np.floor(pose[:split, :2]) == np.floor(pose[t, :2])
    turn = np.abs(wrap_angle(pose[:split, 2] - pose[t, 2]))
    ok = np.flatnonzero(cell.all(-1) & (turn <= math.radians(max_angle_deg) + 1e-6))
    cost = ((pose[ok, :2] - pose[t, :2]) ** 2).sum(-1) + (0.5 * turn[ok]) ** 2
    return int(ok[np.argmin(cost)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("episode", type=Path, help="an episode npz (video, pose)")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--split", type=int, default=None, help="frames before it are the memory (default: 144, "
                   "or the middle of shorter episodes)")
    p.add_argument("--pairs", type=int, default=6, help="revisiting frames shown")
    args = p.parse_args(argv)
    with np.load(args.episode) as z:
        video, pose = z["video"], z["pose"].astype(np.float64)
    t_len = len(pose)
    split = args.split if args.split is not None else (144 if t_len > 144 else t_len // 2)
    later = split + np.flatnonzero(revisit_mask(pose, split))
    if len(later) == 0:
        raise SystemExit(f"{args.episode}: no frame after {split} revisits a place seen before it")
    shown = later[np.linspace(0, len(later) - 1, min(args.pairs, len(later))).round().astype(int)]
    fig = plt.figure(figsize=(2.0 * (len(shown) + 2), 4.4))
    grid = fig.add_gridspec(2, len(shown) + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.plot(pose[:split, 0], pose[:split, 1], "-", color="tab:blue", lw=1.5, label=f"frames 0-{split - 1}")
    ax.plot(pose[split:, 0], pose[split:, 1], "--", color="tab:orange", lw=1.2, label=f"frames {split}-{t_len - 1}")
    ax.plot(*pose[0, :2], "ko", ms=4, label="start")
    for t in shown:
        ax.annotate(str(t), pose[t, :2], fontsize=7, color="tab:orange")
    ax.set_aspect("equal")
    ax.set_title(f"{args.episode.name}: revisits {len(later) / (t_len - split):.0%} of frames >= {split}", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    for i, t in enumerate(shown):
        s = earlier_view(pose, int(t), split)
        for row, (frame, label) in enumerate([(s, "then"), (int(t), "again")]):
            a = fig.add_subplot(grid[row, i + 2])
            a.imshow(video[frame], interpolation="nearest")
            a.set_title(f"{label}: frame {frame}", fontsize=8)
            a.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}: {len(shown)} revisits of {args.episode.name} (split {split})")


if __name__ == "__main__":
    main()
