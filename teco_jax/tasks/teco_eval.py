"""The TECO task's evaluation: teacher-forced metrics on test clips, and an open-loop check.

Dimension keys: B batch, T frames, n frames evaluated (all frames >= n_cond), H/W VQ-GAN grid,
h/w TECO grid, D TECO embedding dim.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax import losses
from teco_jax.models.teco import TECO
from teco_jax.nn.util import take_frames


def evaluate(task: Any, model: TECO, batches: Iterator[dict[str, np.ndarray]], constants) -> dict[str, float]:
    """Teacher-forced metrics on test clips (all frames >= n_cond, no DropLoss):
    recon_acc: D(z_t from the posterior, h_t) vs the true codes;
    next_frame_acc: D(z_t predicted by the prior, decoded greedily, h_t) vs the true codes;
    h_only_acc: D(0, h_t) vs the true codes (what sampler.show = "mean" shows);
    copy_prev_acc: the previous frame's codes as the prediction (baseline);
    open_loop_acc and copy_last_acc: see _open_loop_accuracy.

    `task` is the TECOTask (its forward pass and config)."""
    rows = []
    for batch in batches:
        out = _eval_batch(task, model, jnp.asarray(batch["codes"]), jnp.asarray(batch["actions"]), constants)
        rows.append({k: float(v) for k, v in out.items()})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


@nnx.jit(static_argnums=(0,))
def _eval_batch(task: Any, model: TECO, codes, actions, constants):
    m = task.config.model
    out = task.forward(model, codes, actions, jax.random.key(0), constants, drop_rate=0.0, train=False)
    h = out["h"]
    b, n = h.shape[:2]
    n_tok = h.shape[-3] * h.shape[-2]
    # The prior's deterministic best guess: MaskGIT's confidence schedule, argmax at every step.
    greedy = model.prior.sample_confidence(h.reshape(b * n, n_tok, h.shape[-1]), jax.random.key(1),
                                           steps=m.sampling.confidence_steps, temperature=0.0,
                                           choice_temperature=0.0)
    z_pred = model.codebook.lookup(greedy.reshape(out["z_codes"].shape)).astype(h.dtype)
    pred_codes = jnp.argmax(model.decode_logits(z_pred, h, out["memory"]), axis=-1)
    truth = out["codes"]
    prev = take_frames(codes, out["idx"] - 1)
    h_only = model.h_only_codes(h, out["memory"])
    return {"recon_acc": jnp.mean(jnp.argmax(out["logits"], -1) == truth),
            "next_frame_acc": jnp.mean(pred_codes == truth),
            "h_only_acc": jnp.mean(h_only == truth),
            "copy_prev_acc": jnp.mean(prev == truth),
            "recon_ce": losses.cross_entropy_with_label_smoothing(out["logits"], truth, 0.0),
            **_open_loop_accuracy(model, codes, task.conditioning_actions(model, actions, None, train=False), constants)}


def _open_loop_accuracy(model: TECO, codes_BTHW, actions_BT, constants) -> dict[str, jax.Array]:
    """Over the second half of each clip, predicted from the first half and the actions alone
    (the inputs of the second half zeroed, as sampler.feedback = "none" rolls out):
    open_loop_acc of argmax D(0, h_t), and copy_last_acc of the first half's last frame."""
    t = codes_BTHW.shape[1]
    half = t // 2
    e = jnp.take(constants["vq_embeddings"], codes_BTHW, axis=0)
    z, _ = model.encode(e)
    z = z.at[:, half:].set(0)
    a_emb = model.embed_actions(actions_BT)
    h = model.temporal(z, a_emb)[:, half:]
    memory = model.earlier_frames(actions_BT, e.at[:, half:].set(0))  # the second half unseen, like z
    pred = model.h_only_codes(h, None if memory is None else memory[:, half:])
    truth = codes_BTHW[:, half:]
    return {"open_loop_acc": jnp.mean(pred == truth), "copy_last_acc": jnp.mean(codes_BTHW[:, half - 1:half] == truth)}
