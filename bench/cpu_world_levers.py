"""How hard is each maze world for a small tokenizer and a small TECO? Cheap statistics, no training.

    python bench/cpu_world_levers.py [--episodes 24]

For the DMLab-style preset, the cpu preset and variants that change one lever of the cpu
preset at a time, it renders the same episode seeds and prints:
  detail    PSNR (dB) of frames down-sampled 4x (area) and up-sampled back (bicubic): the
            detail a 4x-down tokenizer must carry beyond a smooth picture (higher = easier)
  colours   distinct RGB colours per frame (mean)
  copy@k    PSNR of frame t-k against frame t (copy-last's quality k frames ahead: the bar a
            model must clear; low = the view changes a lot per step)
  revisit   fraction of frames [T/2, T) revisiting a place of frames [0, T/2) (teco_jax.revisit)
  exact     fraction of frames [T/2, T) equal, pixel for pixel, to a frame of [0, T/2): what a
            model that remembers can copy
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from PIL import Image

from data_gen.common import episode_seeds
from data_gen.maze import PRESETS, generate
from teco_jax import metrics
from teco_jax.revisit import revisit_mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame PSNR of uint8 frames, the benchmark's (capped at teco_jax.metrics.PSNR_MAX_DB)."""
    return float(np.mean(metrics.psnr(a.astype(np.float32), b.astype(np.float32), data_range=255.0)))


def detail_psnr(video: np.ndarray) -> float:
    frames = video.reshape((-1,) + video.shape[-3:])[::7]
    r = frames.shape[1]
    back = np.stack([np.asarray(Image.fromarray(f).resize((r // 4, r // 4), Image.BOX)
                                .resize((r, r), Image.BICUBIC)) for f in frames])
    return psnr(back, frames)


def stats(config, seeds) -> dict:
    out = generate(seeds, config)
    v, pose = out["video"], out["pose"]
    t = v.shape[1]
    row = {"detail": detail_psnr(v),
           "colours": float(np.mean([len(np.unique(f.reshape(-1, 3), axis=0)) for f in v[:, ::9].reshape((-1,) + v.shape[2:])]))}
    for k in (1, 8, 32):
        row[f"copy@{k}"] = psnr(v[:, :-k], v[:, k:])
    row["revisit"] = float(revisit_mask(pose, t // 2).mean())
    h = t // 2
    flat = v.reshape(v.shape[0], t, -1)
    row["exact"] = float(np.mean([[(flat[b, :h] == flat[b, s]).all(axis=1).any() for s in range(h, t)]
                                  for b in range(len(v))]))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=24)
    args = p.parse_args()
    seeds = episode_seeds(0, range(args.episodes))
    smooth = PRESETS["cpu_smooth"]
    variants = {
        "dmlab preset (64x64, patterned)": dataclasses.replace(PRESETS["dmlab"], episode_length=128),
        "cpu_smooth preset": smooth,
        "cpu_smooth, patterned textures": dataclasses.replace(smooth, texture_family="mixed", texture_size=32,
                                                              shade_levels=32, wall_textures=3),
        "cpu_smooth, 64x64": dataclasses.replace(smooth, resolution=64),
        "cpu_smooth, 7x7 maze": dataclasses.replace(smooth, size=7, target_radius=8),
        "cpu_smooth, turn 30 deg": dataclasses.replace(smooth, turn_degrees=30.0),
        "cpu_smooth, cell moves": dataclasses.replace(smooth, cell_moves=True),
        "cpu preset (cell moves, 7x7)": PRESETS["cpu"],
    }
    cols = ("detail", "colours", "copy@1", "copy@8", "copy@32", "revisit", "exact")
    print(f"{'world':34s} " + " ".join(f"{c:>8s}" for c in cols))
    for name, cfg in variants.items():
        row = stats(cfg, seeds)
        print(f"{name:34s} " + " ".join(f"{row[c]:8.2f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
