"""Diagnostic: how fast does TECO learn a video whose next frame is fully determined?

    python scripts/teco_stripes_probe.py [--steps 1000] [--prior_cond h|oracle] \
        [--config configs/teco_dmlab.py:tiny --config.model.z_ds=1 ...]

Every video is vertical stripes over an 8x8 code grid: column j of frame t holds
palette[(j + phase_t) mod 4], with a random 4-code palette per video and the phase moved
by the action (0: -1, 1: +1, 2: stay). Frame t is a function of frame 0 and the actions,
so a model that tracks the phase predicts every frame exactly, while copying the previous
frame is right only where the stripes did not move.

The model is the `--config` TECO (default: the tiny preset's widths and depths; override
keys as for `teco_jax.train`) on an 8x8 grid of random VQ embeddings; the stripes world
sets the grid, vocabulary, actions and clip length. The script prints teacher-forced accuracies on a fixed test
batch as training goes. `--prior_cond oracle` conditions the MaskGIT prior on the
encoder's own continuous output for frame t (which fixes z_t) instead of h_t: the gap
between the two runs shows how much of TECO's error is the prior failing to read z_t
off the history.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from teco_jax import config_base
from teco_jax.config_base import parse_flags
from teco_jax.nn.util import take_frames
from teco_jax.tasks.teco import TECOTask
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


_CONFIG = config_flags.DEFINE_config_file("config", None, "TECO config whose model is probed "
                                         "(default: configs/teco_dmlab.py:tiny)", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 1000, "training steps (batch 8)", lower_bound=1)
_EVERY = flags.DEFINE_integer("every", 250, "evaluate and print every this many steps", lower_bound=1)
_LR = flags.DEFINE_float("lr", 1e-3, "Adam learning rate (constant)", lower_bound=0.0)
_PRIOR_COND = flags.DEFINE_enum("prior_cond", "h", ["h", "oracle"],
                                "what the prior reads: h_t (TECO) or the encoder's output for frame t (oracle)")


def main(argv) -> int:
    del argv
    world = {"model.vqgan_dir": "random", "model.vq_vocab": VOCAB, "model.vq_grid": (GRID, GRID),
             "model.num_actions": 3, "model.action_dropout": 0.0, "data.seq_len": FRAMES, "data.batch_size": 8}
    config = config_replace(_CONFIG.value or config_base.from_file("configs/teco_dmlab.py:tiny"), **world)
    oracle = _PRIOR_COND.value == "oracle"
    task = (OraclePriorTask if oracle else TECOTask)(config)
    model = task.build_model(nnx.Rngs(0))
    constants = task.constants()
    optimizer = nnx.Optimizer(model, optax.adam(_LR.value), wrt=nnx.Param)

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
    print(f"prior conditioned on {_PRIOR_COND.value}")
    for i in tqdm(range(1, _STEPS.value + 1), desc="stripes probe", unit="step", dynamic_ncols=True):
        batch = {k: jnp.asarray(v) for k, v in stripes(rng, config.data.batch_size).items()}
        metrics = train_step(model, optimizer, batch, jax.random.key(i))
        if i % _EVERY.value == 0:
            line = f"step {i:5d} ({time.time() - start:4.0f} s)  train prior_acc {float(metrics['prior_acc']):.3f}"
            ev = task.evaluate(model, iter(test), constants)
            if not oracle:  # evaluation samples the prior from h_t: meaningless for the oracle
                line += f"  test: next_frame_acc {ev['next_frame_acc']:.3f}"
            line += f"  recon_acc {ev['recon_acc']:.3f}  copy_prev_acc {ev['copy_prev_acc']:.3f}"
            tqdm.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=parse_flags))
