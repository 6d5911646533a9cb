"""VQ-GAN tokenizer: a CNN encoder, a factorized l2-normalized codebook and a mirrored decoder.

Dimension keys: B batch (any leading dims, e.g. B, T, are flattened), H/W pixel grid,
h/w latent grid (16x16), C channels, L latent channels (`latent_dim`), K codebook size.

Config attributes (a ConfigDict or any object with them):
    resolution     input side (64 or 128)
    channels       base width
    channel_mult   widths per level; len(channel_mult) - 1 stride-2 downsamplings
                   (64 -> 16 needs 2, 128 -> 16 needs 3)
    num_res_blocks ResBlocks per level
    latent_dim     encoder output channels (the codebook's input)
    codebook_size, code_dim, beta   the codebook (see teco_jax/nn/codebook.py)
    num_mid_blocks (optional, default 2) ResBlocks at the lowest resolution
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.nn.codebook import L2Codebook
from teco_jax.nn.layers import Downsample, ResBlock, Upsample, conv, group_norm


def _widths(config) -> list[int]:
    return [config.channels * m for m in config.channel_mult]


class Encoder(nnx.Module):
    """x_BHWC (pixels in [-1, 1]) -> z_BhwL."""

    def __init__(self, config: Any, *, rngs: nnx.Rngs, dtype=None):
        widths = _widths(config)
        n_mid = getattr(config, "num_mid_blocks", 2)
        self.conv_in = conv(3, widths[0], 3, rngs=rngs, dtype=dtype)
        blocks, ch = [], widths[0]
        for i, w in enumerate(widths):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(ch, w, rngs=rngs, dtype=dtype))
                ch = w
            if i < len(widths) - 1:
                blocks.append(Downsample(ch, rngs=rngs, dtype=dtype))
        for _ in range(n_mid):
            blocks.append(ResBlock(ch, ch, rngs=rngs, dtype=dtype))
        self.blocks = nnx.List(blocks)
        self.norm_out = group_norm(ch, rngs=rngs, dtype=dtype)
        self.conv_out = conv(ch, config.latent_dim, 3, rngs=rngs, dtype=dtype)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        h = self.conv_in(x_BHWC)
        for block in self.blocks:
            h = block(h)
        return self.conv_out(nnx.swish(self.norm_out(h)))


class Decoder(nnx.Module):
    """z_BhwL -> x_BHW3 (roughly in [-1, 1]; no output squashing). `conv_out` is the last layer."""

    def __init__(self, config: Any, *, rngs: nnx.Rngs, dtype=None):
        widths = _widths(config)
        n_mid = getattr(config, "num_mid_blocks", 2)
        ch = widths[-1]
        self.conv_in = conv(config.latent_dim, ch, 3, rngs=rngs, dtype=dtype)
        blocks = [ResBlock(ch, ch, rngs=rngs, dtype=dtype) for _ in range(n_mid)]
        for i in reversed(range(len(widths))):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(ch, widths[i], rngs=rngs, dtype=dtype))
                ch = widths[i]
            if i > 0:
                blocks.append(Upsample(ch, rngs=rngs, dtype=dtype))
        self.blocks = nnx.List(blocks)
        self.norm_out = group_norm(ch, rngs=rngs, dtype=dtype)
        self.conv_out = conv(ch, 3, 3, rngs=rngs, dtype=dtype)

    def features(self, z_BhwL: jax.Array) -> jax.Array:
        """Everything before the last layer: z_BhwL -> the activated input of `conv_out`, BHWC."""
        h = self.conv_in(z_BhwL)
        for block in self.blocks:
            h = block(h)
        return nnx.swish(self.norm_out(h))

    def last_layer(self, h_BHWC: jax.Array, kernel: jax.Array | None = None) -> jax.Array:
        """`conv_out` applied to `features()`'s output, optionally with another kernel (for the
        adaptive GAN weight, which differentiates the losses w.r.t. this kernel)."""
        if kernel is None:
            return self.conv_out(h_BHWC)
        c = self.conv_out
        dtype = c.dtype or jnp.result_type(h_BHWC, kernel)
        y = jax.lax.conv_general_dilated(h_BHWC.astype(dtype), kernel.astype(dtype), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=c.precision)
        return y + c.bias[...].astype(dtype)

    def __call__(self, z_BhwL: jax.Array) -> jax.Array:
        return self.conv_out(self.features(z_BhwL))


class VQGAN(nnx.Module):
    """Encoder + L2Codebook + Decoder. Pixels are floats in [-1, 1]."""

    def __init__(self, config: Any, *, rngs: nnx.Rngs, dtype=None):
        n_down = len(config.channel_mult) - 1
        if config.resolution % (2 ** n_down):
            raise ValueError(f"resolution {config.resolution} is not divisible by 2**{n_down}")
        self.resolution = int(config.resolution)
        self._latent = self.resolution // 2 ** n_down
        self.encoder = Encoder(config, rngs=rngs, dtype=dtype)
        self.codebook = L2Codebook(config.latent_dim, config.codebook_size, config.code_dim,
                                   beta=getattr(config, "beta", 0.25), rngs=rngs, dtype=dtype)
        self.decoder = Decoder(config, rngs=rngs, dtype=dtype)

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(h, w) of the code grid, e.g. (16, 16)."""
        return (self._latent, self._latent)

    def encode(self, x_BHWC: jax.Array) -> dict[str, jax.Array]:
        """x_BHW3 -> dict(z_q=BhwL, codes=Bhw int32, loss, perplexity, usage); B may be several dims."""
        lead = x_BHWC.shape[:-3]
        z = self.encoder(x_BHWC.reshape(-1, *x_BHWC.shape[-3:]))
        out = self.codebook(z)
        out["z_q"] = out["z_q"].reshape(*lead, *out["z_q"].shape[1:])
        out["codes"] = out["codes"].reshape(*lead, *out["codes"].shape[1:])
        return out

    def decode(self, z_q_BhwL: jax.Array) -> jax.Array:
        """z_q_BhwL -> x_BHW3; B may be several dims."""
        lead = z_q_BhwL.shape[:-3]
        x = self.decoder(z_q_BhwL.reshape(-1, *z_q_BhwL.shape[-3:]))
        return x.reshape(*lead, *x.shape[1:])

    def decode_codes(self, codes_Bhw: jax.Array) -> jax.Array:
        """codes_Bhw int -> x_BHW3."""
        return self.decode(self.codebook.lookup(codes_Bhw))

    def __call__(self, x_BHWC: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """x_BHW3 -> (reconstruction x_BHW3, encode()'s dict)."""
        aux = self.encode(x_BHWC)
        return self.decode(aux["z_q"]), aux
