"""How hard is each maze world for a small tokenizer and a small TECO? Cheap statistics, no training.

    python bench/cpu_world_levers.py [--episodes 24]

For the DMLab-style preset, the cpu preset and variants that change one lever of the cpu
preset at a time, it renders the same episode seeds and prints:
  detail    PSNR (dB) of frames down-sampled 4x (area) and up-sampled back (bicubic): the
            detail a 4x-down tokenizer must carry beyond a smooth picture (higher = easier)
  colours   distinct RGB colours per frame (mean)
  copy@k    PSNR of frame t-k against frame t (copy-last's quality k frames ahead: the bar a
            model must clear; low = the view changes a lot per step)
  revisit   fraction of frames [T/2, T) revisiting a place of frames [0, T/2) (eval.revisit)
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from PIL import Image

from data_gen.common import episode_seeds
from data_gen.maze import PRESETS, generate
from eval.revisit import revisit_mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(-3, -2, -1))
    return float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))


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
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=24)
    args = p.parse_args()
    seeds = episode_seeds(0, range(args.episodes))
    cpu = PRESETS["cpu"]
    variants = {
        "dmlab preset (64x64, patterned)": dataclasses.replace(PRESETS["dmlab"], episode_length=128),
        "cpu preset": cpu,
        "cpu, patterned textures": dataclasses.replace(cpu, texture_family="mixed", texture_size=32,
                                                       shade_levels=32, wall_textures=3),
        "cpu, 64x64": dataclasses.replace(cpu, resolution=64),
        "cpu, 7x7 maze": dataclasses.replace(cpu, size=7, target_radius=8),
        "cpu, turn 30 deg": dataclasses.replace(cpu, turn_degrees=30.0),
    }
    cols = ("detail", "colours", "copy@1", "copy@8", "copy@32", "revisit")
    print(f"{'world':34s} " + " ".join(f"{c:>8s}" for c in cols))
    for name, cfg in variants.items():
        row = stats(cfg, seeds)
        print(f"{name:34s} " + " ".join(f"{row[c]:8.2f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
