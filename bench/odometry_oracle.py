"""Which predicted frames could a lookup get right, and how long would a rollout stay on them?
No model: rules applied to the true frames of the cpu maze world.

    python bench/odometry_oracle.py [--episodes 100] [--fit_episodes 200]

For frames [T/2, T) of freshly rendered episodes (seeds apart from training data) it prints
the fraction each rule predicts exactly:
  view+action   the frame that followed the latest earlier (frame t-1, a_t) pair: what
                model.recall's FrameRecall matches on
  + inverse     also the frame before an earlier (frame t-1, inverse of a_t) step
  odometry      the latest earlier frame at frame t's dead-reckoned pose (teco_jax.odometry,
                with the table `odometry.fit` finds on other episodes): model.odometry
  any earlier   frame t equals some earlier frame: the ceiling of copying
and, for the first two, the fraction of frames a rollout would get right if it stayed on the
real views only while every predicted frame so far was exact (a lookup keyed on the
previous view cannot recover from a wrong one; the pose needs no view and can).
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from data_gen.maze import PRESETS, generate
from teco_jax import odometry

INVERSE = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}  # forward/backward, strafes, turns (data_gen.maze.ACTIONS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=100, help="episodes scored")
    p.add_argument("--fit_episodes", type=int, default=200, help="episodes the odometry table is fitted on")
    args = p.parse_args()
    if args.episodes < 1 or args.fit_episodes < 1:
        p.error(f"--episodes ({args.episodes}) and --fit_episodes ({args.fit_episodes}) must be at least 1")
    cfg = PRESETS["cpu"]
    fit_eps = generate(np.arange(args.fit_episodes) + 2 * 10**6, cfg)
    table, rate = odometry.fit(fit_eps["actions"], fit_eps["video"], 6)
    print(f"fitted table: {table} (same view at the same pose: {rate:.3f} of frames)")
    eps = generate(np.arange(args.episodes) + 3 * 10**6, cfg)
    views, actions = odometry.view_ids(eps["video"]), eps["actions"]
    latest = np.asarray(odometry.latest_same_place(jnp.asarray(actions), odometry.moved(jnp.asarray(views)), table))
    t_all = views.shape[1]
    hits = {k: 0 for k in ("view+action", "+ inverse", "odometry", "any earlier")}
    chain = {"view+action": 0, "+ inverse": 0}
    n = 0
    for v, a, lat in zip(views, actions, latest):
        on = dict.fromkeys(chain, True)
        for t in range(t_all // 2, t_all):
            n += 1
            fwd = [v[q] for q in range(1, t) if v[q - 1] == v[t - 1] and a[q] == a[t]]
            inv = [v[q - 1] for q in range(1, t) if v[q] == v[t - 1] and a[q] == INVERSE[int(a[t])]]
            pred = {"view+action": fwd[-1] if fwd else None}
            pred["+ inverse"] = pred["view+action"] if fwd else (inv[-1] if inv else None)
            pred["odometry"] = v[lat[t]] if lat[t] >= 0 else None
            for k in pred:
                hits[k] += pred[k] == v[t]
            hits["any earlier"] += v[t] in v[:t]
            for k in chain:
                on[k] = on[k] and pred[k] == v[t]
                chain[k] += on[k]
    print(f"{args.episodes} episodes, frames {t_all // 2}-{t_all - 1} ({n} frames): exactly predicted by")
    for k, h in hits.items():
        stay = f"; a rollout that stays on the real views only while exact: {chain[k] / n:.3f}" if k in chain else ""
        print(f"  {k:12s} {h / n:.3f}{stay}")


if __name__ == "__main__":
    main()
