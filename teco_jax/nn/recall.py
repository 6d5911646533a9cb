"""Recall: a content-addressed lookup of "what followed this input last time" (not in TECO).

Dimension keys: B batch, T positions, P earlier positions, N tokens per position, W width,
K key dim.

An induction head (match the current input to an earlier one, read what came next) takes a
transformer two layers that must find each other in training; on the CPU world none did
(docs/cpu_world.md). Recall builds that circuit in. For position t it scores every earlier
position p by the cosine between one projection P of the inputs at t and at p - 1 (the
same P for both, so identical inputs already match at initialisation), and returns the
softmax-weighted values V x_p of the positions whose predecessor matched. A learned
"nothing matched" slot with a zero value lets a position read nothing. Only positions
1 <= p <= t are read, so out_t depends on x_0..x_t alone: the output is as causal as the
input sequence. FrameRecall makes the same match on (previous frame, action) keys, to pick
the earlier frame that TECO's decoder copies from (models/teco.py, TECO.recalled).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.nn.layers import dense
from teco_jax.nn.util import shift_right


def _unit(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x ** 2, axis=-1, keepdims=True) + 1e-6)


def match_weights(k_BTK: jax.Array, log_scale: jax.Array, null: jax.Array) -> jax.Array:
    """Softmax of position t over [nothing, positions 0..T-1] with logits exp(log_scale) times
    <k_t, k_{p-1}> for 1 <= p <= t (keys of unit length) and times `null` for nothing (a
    similarity threshold): (B, T, 1 + T), float32."""
    b, t = k_BTK.shape[:2]
    logits_BTP = jnp.exp(log_scale) * jnp.einsum("btk,bpk->btp", k_BTK, shift_right(k_BTK))  # key of p: x_{p-1}
    pos = jnp.arange(t)
    readable = (pos[None, :] >= 1) & (pos[None, :] <= pos[:, None])
    logits_BTP = jnp.where(readable, logits_BTP, -jnp.inf)
    null = jnp.broadcast_to(jnp.exp(log_scale) * null, (b, t, 1))
    return jax.nn.softmax(jnp.concatenate([null, logits_BTP], axis=-1), axis=-1)


class Recall(nnx.Module):
    """x_BTNW -> recalled_BTNW (added to the input by the caller)."""

    def __init__(self, tokens: int, width: int, key_dim: int, *, rngs: nnx.Rngs, dtype=None,
                 init_scale: float = 10.0):
        self.key = dense(tokens * width, key_dim, (None, None), use_bias=False, rngs=rngs, dtype=dtype)
        self.value = dense(width, width, ("embed", None), use_bias=False, rngs=rngs, dtype=dtype)
        self.log_scale = nnx.Param(jnp.asarray(math.log(init_scale), jnp.float32))  # cosine -> logit
        self.null = nnx.Param(jnp.zeros((), jnp.float32))  # the "nothing matched" slot's similarity

    def weights(self, x_BTNW: jax.Array) -> jax.Array:
        """Attention of each position over [nothing, positions 0..T-1]: (B, T, 1 + T), float32."""
        b, t = x_BTNW.shape[:2]
        k_BTK = _unit(self.key(x_BTNW.reshape(b, t, -1)))
        return match_weights(k_BTK, self.log_scale[...], self.null[...])

    def __call__(self, x_BTNW: jax.Array) -> jax.Array:
        a_BTP = self.weights(x_BTNW)[..., 1:].astype(x_BTNW.dtype)
        return jnp.einsum("btp,bpnw->btnw", a_BTP, self.value(x_BTNW))


class FrameRecall(nnx.Module):
    """Which earlier frame to copy: the one that followed the same view and action before.

    e_BTHWE (the frames' VQ-GAN embeddings), a_BTA (actions) -> weights (B, T, 1 + T) over
    [nothing, positions]: position t (frame t-1 and action a_t, what predicts frame t) is
    matched against position p - 1, whose frame p - 1 is what came next there. The key is the
    unit frame part and the unit action part, each projected, over sqrt(2), so the
    similarity is the mean of the view's and the action's cosines; "nothing" sits at 0.75 at
    initialisation: a match needs both. Reading frame p - 1 for p <= t uses frames < t only.
    """

    def __init__(self, frame_dim: int, action_dim: int, key_dim: int, *, rngs: nnx.Rngs, dtype=None,
                 init_scale: float = 30.0, null: float = 0.75):
        self.frame_key = dense(frame_dim, key_dim, (None, None), use_bias=False, rngs=rngs, dtype=dtype)
        self.action_key = dense(action_dim, key_dim, (None, None), use_bias=False, rngs=rngs, dtype=dtype)
        self.log_scale = nnx.Param(jnp.asarray(math.log(init_scale), jnp.float32))
        self.null = nnx.Param(jnp.asarray(null, jnp.float32))  # half a match (view or action alone) is below it

    def weights(self, e_BTHWE: jax.Array, a_BTA: jax.Array) -> jax.Array:
        b, t = e_BTHWE.shape[:2]
        e_prev = shift_right(e_BTHWE).reshape(b, t, -1)
        k_BTK = jnp.concatenate([_unit(self.frame_key(e_prev)), _unit(self.action_key(a_BTA))], -1) / math.sqrt(2)
        return match_weights(k_BTK, self.log_scale[...], self.null[...])
