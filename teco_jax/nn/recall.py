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
input sequence.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.nn.layers import dense


class Recall(nnx.Module):
    """x_BTNW -> recalled_BTNW (added to the input by the caller)."""

    def __init__(self, tokens: int, width: int, key_dim: int, *, rngs: nnx.Rngs, dtype=None,
                 init_scale: float = 10.0):
        self.key = dense(tokens * width, key_dim, (None, None), use_bias=False, rngs=rngs, dtype=dtype)
        self.value = dense(width, width, ("embed", None), use_bias=False, rngs=rngs, dtype=dtype)
        self.log_scale = nnx.Param(jnp.asarray(math.log(init_scale), jnp.float32))  # cosine -> logit
        self.null_logit = nnx.Param(jnp.zeros((), jnp.float32))  # the "nothing matched" slot

    def weights(self, x_BTNW: jax.Array) -> jax.Array:
        """Attention of each position over [nothing, positions 0..T-1]: (B, T, 1 + T), float32."""
        b, t = x_BTNW.shape[:2]
        k_BTK = self.key(x_BTNW.reshape(b, t, -1)).astype(jnp.float32)
        k_BTK = k_BTK * jax.lax.rsqrt(jnp.sum(k_BTK ** 2, axis=-1, keepdims=True) + 1e-6)
        prev_BTK = jnp.concatenate([jnp.zeros_like(k_BTK[:, :1]), k_BTK[:, :-1]], axis=1)  # key of p is x_{p-1}
        logits_BTP = jnp.exp(self.log_scale[...]) * jnp.einsum("btk,bpk->btp", k_BTK, prev_BTK)
        pos = jnp.arange(t)
        readable = (pos[None, :] >= 1) & (pos[None, :] <= pos[:, None])
        logits_BTP = jnp.where(readable, logits_BTP, -jnp.inf)
        null = jnp.broadcast_to(self.null_logit[...], (b, t, 1))
        return jax.nn.softmax(jnp.concatenate([null, logits_BTP], axis=-1), axis=-1)

    def __call__(self, x_BTNW: jax.Array) -> jax.Array:
        a_BTP = self.weights(x_BTNW)[..., 1:].astype(x_BTNW.dtype)
        return jnp.einsum("btp,bpnw->btnw", a_BTP, self.value(x_BTNW))
