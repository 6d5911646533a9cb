"""Multi-head self-attention with a key/value cache for incremental decoding.

Dimension keys: B batch, L sequence length (or the cache length `max_len`), D width,
H heads, K head dim, S new tokens in a decode step.

Masks are boolean, True = "may attend". A mask for a full call is broadcastable to
(B, H, L, L), e.g. (L, L); a mask for a decode step concerns only the S new tokens among
themselves, (S, S) or broadcastable to (B, H, S, S): every cached position (< index) is
always visible to the new tokens, positions >= index + S never are.

Logits and the softmax are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx, struct

from teco_jax.nn.layers import dense

_NEG_INF = -1e30  # finite, so a fully masked row gives a uniform (not NaN) distribution


@struct.dataclass
class KVCache:
    """Keys/values of one attention layer for the first `index` positions.

    k, v: (B, max_len, H, K) in the compute dtype; index: int32 scalar, the number of
    positions already written (the next decode step writes positions index..index+S-1).
    """

    k: jax.Array
    v: jax.Array
    index: jax.Array

    @property
    def max_len(self) -> int:
        return self.k.shape[1]


def attend(q_BSHK: jax.Array, k_BLHK: jax.Array, v_BLHK: jax.Array, mask=None) -> jax.Array:
    """softmax(q k^T / sqrt(K), masked) v, float32 logits/softmax. mask broadcastable to (B, H, S, L)."""
    scale = 1.0 / math.sqrt(q_BSHK.shape[-1])
    logits_BHSL = jnp.einsum("bshk,blhk->bhsl", q_BSHK, k_BLHK, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        logits_BHSL = jnp.where(mask, logits_BHSL, _NEG_INF)
    w_BHSL = jax.nn.softmax(logits_BHSL, axis=-1).astype(v_BLHK.dtype)
    return jnp.einsum("bhsl,blhk->bshk", w_BHSL, v_BLHK)


def decode_mask(mask_new, index: jax.Array, num_new: int, max_len: int) -> jax.Array:
    """The (..., S, max_len) mask of a decode step writing S tokens at `index`.

    Position j is visible to new token s iff j < index, or index <= j < index + S and
    mask_new[..., s, j - index] (mask_new None = the new tokens all see each other).
    """
    if mask_new is None:
        mask_new = jnp.ones((num_new, num_new), bool)
    mask_new = jnp.asarray(mask_new, bool)
    lead = mask_new.shape[:-2]
    padded = jax.lax.dynamic_update_slice(jnp.zeros(lead + (num_new, max_len), bool),
                                          jnp.broadcast_to(mask_new, lead + (num_new, num_new)),
                                          (0,) * len(lead) + (0, index))
    past = jnp.arange(max_len) < index
    return padded | past


class MultiHeadAttention(nnx.Module):
    """x_BLD -> y_BLD. q/k/v/out projections with bias; head_dim = width // num_heads by default."""

    def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs, dtype=None, head_dim: int | None = None):
        if head_dim is None:
            if width % num_heads:
                raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
            head_dim = width // num_heads
        self.width, self.num_heads, self.head_dim = width, num_heads, head_dim
        inner = num_heads * head_dim
        self.q_proj = dense(width, inner, ("embed", "heads"), rngs=rngs, dtype=dtype)
        self.k_proj = dense(width, inner, ("embed", "heads"), rngs=rngs, dtype=dtype)
        self.v_proj = dense(width, inner, ("embed", "heads"), rngs=rngs, dtype=dtype)
        self.out_proj = dense(inner, width, ("heads", "embed"), rngs=rngs, dtype=dtype)

    def _qkv(self, x_BLD: jax.Array):
        split = lambda t: t.reshape(*t.shape[:-1], self.num_heads, self.head_dim)  # noqa: E731
        return split(self.q_proj(x_BLD)), split(self.k_proj(x_BLD)), split(self.v_proj(x_BLD))

    def _out(self, o_BLHK: jax.Array) -> jax.Array:
        return self.out_proj(o_BLHK.reshape(*o_BLHK.shape[:-2], self.num_heads * self.head_dim))

    def __call__(self, x_BLD: jax.Array, mask=None) -> jax.Array:
        q, k, v = self._qkv(x_BLD)
        return self._out(attend(q, k, v, mask))

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        """An empty cache (index 0) for `max_len` positions."""
        shape = (batch, max_len, self.num_heads, self.head_dim)
        return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype), index=jnp.zeros((), jnp.int32))

    def decode(self, x_BSD: jax.Array, cache: KVCache, mask_new=None) -> tuple[jax.Array, KVCache]:
        """Append S tokens at cache.index and attend to every cached position < index + S.

        mask_new: (S, S) or broadcastable to (B, H, S, S), the mask among the new tokens
        (None = all visible). The caller keeps index + S <= max_len (not checked under jit).
        A prefill is a decode of the first P tokens into an empty cache.
        """
        q, k, v = self._qkv(x_BSD)
        s = x_BSD.shape[-2]
        start = (0, cache.index, 0, 0)
        k_all = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start)
        v_all = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start)
        mask = decode_mask(mask_new, cache.index, s, cache.max_len)
        y = self._out(attend(q, k_all.astype(q.dtype), v_all.astype(q.dtype), mask))
        return y, KVCache(k=k_all, v=v_all, index=cache.index + s)
