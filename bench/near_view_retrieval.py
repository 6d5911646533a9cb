"""Does the pose memory find the place, and how good is the frame it finds? No model: the pose
memory's retrieval (teco_jax/pose_memory.py) run on freshly rendered maze or voxel episodes.

    python bench/near_view_retrieval.py [--world maze|voxel] [--preset smooth] [--episodes 64] [--context 64]

The motion per action is fitted on other episodes' poses. For each predicted frame t >=
context, dead reckoning from the actions (steps blocked in the context are found from the true
frames; predicted frames are assumed to move, as in a rollout) gives the query pose, and the
nearest context frame is retrieved. Printed per split (all predicted frames; "memory": places
seen only before the last `window` context frames, the benchmark's memory split):
  within A/C   retrieved frame's true pose within A degrees and C cells of frame t's true pose
  PSNR         of the retrieved frame alone against frame t (what copying it would score)
  turned       the same, the retrieved frame turned into the query's heading first
               (pose_memory.rotate_view with the world's field of view; columns it did not see
               keep the unturned frame's pixels)
  oracle       of the context frame nearest frame t's *true* pose (retrieval with exact poses)
  best         of the context frame with the highest PSNR against frame t (a ceiling of copying)
  copy-last    of the last context frame
"Found the place" (within A/C) is separate from "drew it well" (a model's PSNR over PSNR).
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from data_gen import maze, voxel
from teco_jax import pose_memory
from teco_jax.metrics import PSNR_MAX_DB
from teco_jax.revisit import memory_mask, wrap_angle


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2, axis=(-3, -2, -1))
    return np.minimum(10 * np.log10(1.0 / np.maximum(mse, 1e-10)), PSNR_MAX_DB)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="maze", choices=("maze", "voxel"),
                   help="data_gen.maze (no collisions in the smooth preset) or data_gen.voxel (terrain, trees and "
                        "jumps: motion is inexact)")
    p.add_argument("--preset", default=None, help="the world's preset (default: maze smooth, voxel cpu)")
    p.add_argument("--episodes", type=int, default=64, help="episodes scored")
    p.add_argument("--fit_episodes", type=int, default=64, help="episodes the motion is fitted on")
    p.add_argument("--context", type=int, default=64, help="context frames (the cpu protocol's 64)")
    p.add_argument("--window", type=int, default=16, help="the short window of the memory split")
    p.add_argument("--turn_cost", type=float, nargs="+", default=[0.5], help="cells per radian (several: a sweep)")
    p.add_argument("--tolerance", type=float, nargs=2, default=(15.0, 0.25), metavar=("DEG", "CELLS"),
                   help="a retrieved frame within this heading and distance of the truth found the place")
    args = p.parse_args()
    if args.episodes < 1 or args.fit_episodes < 1:
        p.error("--episodes and --fit_episodes must be at least 1")
    world = maze if args.world == "maze" else voxel
    args.preset = args.preset or ("smooth" if args.world == "maze" else "cpu")
    if args.preset not in world.PRESETS:
        p.error(f"--preset {args.preset!r}: the {args.world} world's presets are {sorted(world.PRESETS)}")
    cfg, generate = world.PRESETS[args.preset], world.generate
    fov_degrees = cfg.fov_degrees if args.world == "maze" else cfg.fov_deg
    if not 1 <= args.context < cfg.episode_length:
        p.error(f"--context {args.context}: the {args.preset} world's episodes have {cfg.episode_length} frames; "
                f"give 1 to {cfg.episode_length - 1} context frames")
    fit = generate(np.arange(args.fit_episodes) + 2 * 10**6, cfg)
    motion, rate = pose_memory.Motion.fit(fit["actions"], fit["pose"], len(world.ACTIONS))
    print(f"{args.preset}: fitted motion {motion} (steps that moved per action: {np.round(rate, 2).tolist()})")
    eps = generate(np.arange(args.episodes) + 3 * 10**6, cfg)
    video, actions, true_pose = eps["video"], eps["actions"], eps["pose"].astype(np.float64)
    c = args.context
    t_all = video.shape[1]
    moved = np.array(pose_memory.moved(jnp.asarray(video)))
    moved[:, c:] = True  # a rollout's frames: assumed to move
    pose, query = (np.asarray(x) for x in pose_memory.dead_reckon(jnp.asarray(actions), jnp.asarray(moved), motion))
    mem = memory_mask(true_pose, c, args.window)  # (B, T - c)
    last = psnr(video[:, c - 1:c], video[:, c:])
    pairs = psnr(video[:, c:, None], video[:, None, :c])  # (B, T - c, c)
    best = pairs.max(-1)
    for turn_cost in args.turn_cost:
        retrieval = pose_memory.Retrieval(neighbours=1, turn_cost=turn_cost, radius=np.inf)

        def nearest_context(poses, queries):
            """pose_memory.nearest with the predicted frames' own poses moved out of reach: the
            context frame nearest each predicted frame's query, (B, T - c)."""
            far = np.array(poses, np.float32)
            far[:, c:, :2] = 1e6
            idx, _ = pose_memory.nearest(jnp.asarray(far), jnp.asarray(queries, jnp.float32), retrieval)
            return np.asarray(idx)[:, c:, 0]

        got = nearest_context(pose, query)
        oracle = nearest_context(true_pose, true_pose)  # exact poses: frame t's query is its true pose
        take = lambda idx: np.take_along_axis(pairs, idx[..., None], -1)[..., 0]  # noqa: E731
        got_psnr, oracle_psnr = take(got), take(oracle)
        frames = np.take_along_axis(video[:, :c], got[..., None, None, None], 1)  # (B, T - c, H, W, 3)
        turn = wrap_angle(np.take_along_axis(pose[:, :c, 2], got, 1) - query[:, c:, 2])
        flat = frames.reshape((-1,) + frames.shape[2:]).astype(np.float32)
        turned, seen = (np.asarray(x) for x in pose_memory.rotate_view(
            jnp.asarray(flat), jnp.asarray(turn.reshape(-1), jnp.float32), np.radians(fov_degrees)))
        turned = np.where(seen > 0.99, turned, flat).reshape(frames.shape)
        turned_psnr = psnr(np.rint(turned), video[:, c:])
        gp = np.take_along_axis(true_pose[:, :c], got[..., None], 1)
        ang = np.degrees(np.abs(wrap_angle(gp[..., 2] - true_pose[:, c:, 2])))
        dist = np.linalg.norm(gp[..., :2] - true_pose[:, c:, :2], axis=-1)
        within = (ang <= args.tolerance[0]) & (dist <= args.tolerance[1])
        print(f"turn_cost {turn_cost} cells/radian; {args.episodes} episodes, frames {c}-{t_all - 1}")
        print(f"  {'split':8s} {'frames':>6s} {'within %g°/%gc' % tuple(args.tolerance):>14s} {'PSNR':>6s} "
              f"{'turned':>6s} {'oracle':>6s} {'best':>6s} {'copy-last':>9s}")
        for name, m in (("all", np.ones_like(mem)), ("memory", mem)):
            if not m.any():
                print(f"  {name:8s} {0:6d}")
                continue
            print(f"  {name:8s} {int(m.sum()):6d} {within[m].mean():14.3f} {got_psnr[m].mean():6.2f} "
                  f"{turned_psnr[m].mean():6.2f} {oracle_psnr[m].mean():6.2f} {best[m].mean():6.2f} "
                  f"{last[m].mean():9.2f}")


if __name__ == "__main__":
    main()
