"""Pre-LayerNorm transformer (as in TECO's release) with incremental decoding, and mask /
position helpers.

Dimension keys: B batch, L sequence length, C input features, D width, S new tokens in a
decode step.

Structure of `Transformer`: dense(C -> D) (+ positions, given by the caller) -> blocks
[x + Attn(LN(x)); x + MLP(LN(x))] -> dense(D -> D) + GELU + LayerNorm -> optional dense(D -> out_dim).
Parameters per block: 4 (D^2 + D) attention + (2 D M + M + D) MLP + 4 D layer norms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax.nn.attention import KVCache, MultiHeadAttention
from teco_jax.nn.layers import dense, layer_norm
from teco_jax.nn.util import apply

TransformerCache = tuple[KVCache, ...]  # one KVCache per block


# ----------------------------------------------------------------- helpers

def sinusoidal_positions(length_or_positions, dim: int) -> jax.Array:
    """Sinusoidal encodings, (L, dim) float32 (or positions.shape + (dim,)).

    The first dim//2 features are sin(p * f_i), the next dim//2 cos(p * f_i), with
    f_i = 1 / 10000^(2i / dim); an odd dim gets a trailing zero feature.
    """
    if isinstance(length_or_positions, (int, np.integer)):
        pos = jnp.arange(int(length_or_positions), dtype=jnp.float32)
    else:
        pos = jnp.asarray(length_or_positions, jnp.float32)
    half = dim // 2
    freqs = 1.0 / (10000.0 ** (2.0 * jnp.arange(half, dtype=jnp.float32) / dim))
    angles = pos[..., None] * freqs
    out = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if dim % 2:
        out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, 1)])
    return out


def block_causal_mask(num_blocks: int, block_size: int) -> jax.Array:
    """(L, L) bool, L = num_blocks * block_size: a token of block t sees all tokens of blocks <= t."""
    blk = jnp.arange(num_blocks * block_size) // block_size
    return blk[:, None] >= blk[None, :]


def causal_mask(length: int) -> jax.Array:
    """(L, L) bool lower-triangular (including the diagonal)."""
    return block_causal_mask(length, 1)


# ----------------------------------------------------------------- modules

class MLP(nnx.Module):
    """dense(D -> M) + GELU + dense(M -> D), both with bias."""

    def __init__(self, width: int, mlp_dim: int, *, rngs: nnx.Rngs, dtype=None):
        self.fc1 = dense(width, mlp_dim, ("embed", "mlp"), rngs=rngs, dtype=dtype)
        self.fc2 = dense(mlp_dim, width, ("mlp", "embed"), rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nnx.gelu(self.fc1(x)))


class TransformerBlock(nnx.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)). x_BLD -> y_BLD."""

    def __init__(self, width: int, mlp_dim: int, num_heads: int, *, rngs: nnx.Rngs, dtype=None):
        self.norm1 = layer_norm(width, rngs=rngs, dtype=dtype)
        self.attn = MultiHeadAttention(width, num_heads, rngs=rngs, dtype=dtype)
        self.norm2 = layer_norm(width, rngs=rngs, dtype=dtype)
        self.mlp = MLP(width, mlp_dim, rngs=rngs, dtype=dtype)

    def __call__(self, x_BLD: jax.Array, mask=None) -> jax.Array:
        x_BLD = x_BLD + self.attn(self.norm1(x_BLD), mask)
        return x_BLD + self.mlp(self.norm2(x_BLD))

    def decode(self, x_BSD: jax.Array, cache: KVCache, mask_new=None) -> tuple[jax.Array, KVCache]:
        h, cache = self.attn.decode(self.norm1(x_BSD), cache, mask_new)
        x_BSD = x_BSD + h
        return x_BSD + self.mlp(self.norm2(x_BSD)), cache


class Transformer(nnx.Module):
    """x_BLC -> y_BLD (or y_BL{out_dim}); see the module docstring for the structure.

    `dtype` is the compute dtype (parameters stay float32). Positions are added by the
    caller through `pos_BLD` (after the input projection; any shape broadcastable to
    (B, L, D), e.g. (L, D) from `sinusoidal_positions`).
    """

    def __init__(self, in_dim: int, width: int, mlp_dim: int, num_heads: int, num_layers: int, *,
                 rngs: nnx.Rngs, dtype=None, out_dim: int | None = None, remat: bool = False):
        self.in_dim, self.width, self.num_layers, self.dtype = in_dim, width, num_layers, dtype
        self.remat = remat  # recompute each block's activations in the backward pass (memory for time)
        self.in_proj = dense(in_dim, width, (None, "embed"), rngs=rngs, dtype=dtype)
        self.blocks = nnx.List([TransformerBlock(width, mlp_dim, num_heads, rngs=rngs, dtype=dtype)
                                for _ in range(num_layers)])
        self.final_proj = dense(width, width, ("embed", None), rngs=rngs, dtype=dtype)
        self.final_norm = layer_norm(width, rngs=rngs, dtype=dtype)
        self.out_proj = (dense(width, out_dim, ("embed", None), rngs=rngs, dtype=dtype)
                         if out_dim is not None else None)

    def _embed(self, x: jax.Array, pos) -> jax.Array:
        h = self.in_proj(x)
        if pos is not None:
            h = h + jnp.asarray(pos).astype(h.dtype)
        return h

    def _head(self, h: jax.Array) -> jax.Array:
        h = self.final_norm(nnx.gelu(self.final_proj(h)))
        return self.out_proj(h) if self.out_proj is not None else h

    def __call__(self, x_BLC: jax.Array, mask=None, pos_BLD=None) -> jax.Array:
        """mask: bool broadcastable to (B, H, L, L) (True = may attend); None = bidirectional."""
        h = self._embed(x_BLC, pos_BLD)
        for block in self.blocks:
            h = apply(block, h, mask, remat=self.remat)
        return self._head(h)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> TransformerCache:
        """An empty cache (one KVCache per block) for `max_len` positions; dtype defaults to
        the compute dtype (float32 when None)."""
        dtype = dtype or self.dtype or jnp.float32
        return tuple(block.attn.init_cache(batch, max_len, dtype) for block in self.blocks)

    def decode(self, x_BSC: jax.Array, cache: TransformerCache, mask_new=None,
               pos_BSD=None) -> tuple[jax.Array, TransformerCache]:
        """Process S new tokens at position cache index..index+S-1; returns their outputs and the
        updated cache. Equivalent to the full call when the full mask lets every token see all
        earlier positions and `mask_new` is its (S, S) block among the new tokens (e.g. one block
        of `block_causal_mask`, or a prefill with the (P, P) top-left corner of the mask).
        pos_BSD: the positions of the new tokens (e.g. sinusoidal_positions(index + arange(S), D)).
        """
        h = self._embed(x_BSC, pos_BSD)
        new_cache = []
        for block, c in zip(self.blocks, cache):
            h, c = block.decode(h, c, mask_new)
            new_cache.append(c)
        return self._head(h), tuple(new_cache)

    def prefill(self, x_BPC: jax.Array, cache: TransformerCache, mask=None,
                pos_BPD=None) -> tuple[jax.Array, TransformerCache]:
        """Decode the first P tokens into an (empty) cache in one call; mask is their (P, P) mask."""
        return self.decode(x_BPC, cache, mask, pos_BPD)


def transformer_param_count(in_dim: int, width: int, mlp_dim: int, num_layers: int,
                            out_dim: int | None = None) -> int:
    """Analytic parameter count of `Transformer` (head_dim = width // num_heads)."""
    d, m = width, mlp_dim
    per_block = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 4 * d
    total = (in_dim * d + d) + num_layers * per_block + (d * d + d) + 2 * d
    if out_dim is not None:
        total += d * out_dim + out_dim
    return total
