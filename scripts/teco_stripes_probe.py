"""Diagnostic: how fast does TECO learn a video whose next frame is fully determined?

    python scripts/teco_stripes_probe.py [--steps 1000] [--prior_cond h|oracle] [--set model.z_ds=1 ...]

Every video is vertical stripes over an 8x8 code grid: column j of frame t holds
palette[(j + phase_t) mod 4], with a random 4-code palette per video and the phase moved
by the action (0: -1, 1: +1, 2: stay). Frame t is a function of frame 0 and the actions,
so a model that tracks the phase predicts every frame exactly, while copying the previous
frame is right only where the stripes did not move.

The model is the `configs/teco_dmlab.py:tiny` TECO (same widths and depths) on an 8x8
grid of random VQ embeddings. The script prints teacher-forced accuracies on a fixed test
batch as training goes. `--prior_cond oracle` conditions the MaskGIT prior on the
encoder's own continuous output for frame t (which fixes z_t) instead of h_t: the gap
between the two runs shows how much of TECO's error is the prior failing to read z_t
off the history.
"""

from __future__ import annotations

import argparse
import ast
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from teco_jax import config_base
from teco_jax.tasks.teco import TECOTask, take_frames
from teco_jax.trainer import config_replace

FRAMES, GRID, PALETTE, VOCAB = 6, 8, 4, 8


def stripes(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """codes (B, T, 8, 8) int32 and actions (B, T) int32 of the stripes world."""
    actions = rng.integers(0, 3, (batch, FRAMES)).astype(np.int32)
    step = np.select([actions == 0, actions == 1], [-1, 1], 0)
    phase = np.cumsum(step, axis=1) + rng.integers(0, PALETTE, (batch, 1))
    palette = rng.integers(0, VOCAB, (batch, PALETTE))
    column = (np.arange(GRID)[None, None, :] + phase[:, :, None]) % PALETTE  # (B, T, W)
    rows = np.take_along_axis(palette[:, None, :], column, axis=2)
    codes = np.broadcast_to(rows[:, :, None, :], (batch, FRAMES, GRID, GRID)).astype(np.int32)
    return {"codes": codes, "actions": actions}


class OraclePriorTask(TECOTask):
    """The prior reads the encoder's continuous output for frame t (stop-gradient), not h_t."""

    def prior_condition(self, out: dict) -> jax.Array:
        return jax.lax.stop_gradient(take_frames(out["vq"]["z_cont"], out["idx"]))


def probe_config(overrides: list[str]):
    """The tiny preset on the stripes world, then `key=value` overrides (values as Python literals)."""
    c = config_base.from_file("configs/teco_dmlab.py:tiny")
    updates = {"model.vqgan_dir": "random", "model.vq_vocab": VOCAB, "model.vq_grid": (GRID, GRID),
               "model.num_actions": 3, "model.action_dropout": 0.0, "data.seq_len": FRAMES, "data.batch_size": 8}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            updates[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            updates[key] = value
    return config_replace(c, **updates)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="training steps (batch 8)")
    p.add_argument("--every", type=int, default=250, help="evaluate and print every this many steps")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant)")
    p.add_argument("--prior_cond", choices=("h", "oracle"), default="h",
                   help="what the prior reads: h_t (TECO) or the encoder's output for frame t (oracle)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. model.codebook_size=64 model.z_ds=1")
    args = p.parse_args(argv)

    config = probe_config(args.set)
    task = (OraclePriorTask if args.prior_cond == "oracle" else TECOTask)(config)
    model = task.build_model(nnx.Rngs(0))
    constants = task.constants()
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch, key):
        def loss_fn(model):
            return task.loss(model, batch, key, 0, constants)

        (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return metrics

    rng = np.random.default_rng(0)
    test = [stripes(np.random.default_rng(1), 32)]
    start = time.time()
    print(f"prior conditioned on {args.prior_cond}; overrides: {' '.join(args.set) or 'none'}")
    for i in range(1, args.steps + 1):
        batch = {k: jnp.asarray(v) for k, v in stripes(rng, config.data.batch_size).items()}
        metrics = train_step(model, optimizer, batch, jax.random.key(i))
        if i % args.every == 0:
            line = f"step {i:5d} ({time.time() - start:4.0f} s)  train prior_acc {float(metrics['prior_acc']):.3f}"
            ev = task.evaluate(model, iter(test), constants)
            if args.prior_cond == "h":  # evaluation samples the prior from h_t: meaningless for the oracle
                line += f"  test: next_frame_acc {ev['next_frame_acc']:.3f}"
            line += f"  recon_acc {ev['recon_acc']:.3f}  copy_prev_acc {ev['copy_prev_acc']:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
