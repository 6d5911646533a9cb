"""PatchGAN discriminator (Isola et al. 2017) with GroupNorm instead of BatchNorm.

Dimension keys: B batch (any leading dims), H/W pixels, h/w logit map (H / 2**n_layers).
"""

from __future__ import annotations

import jax
from flax import nnx

from teco_jax.nn.layers import conv, group_norm


class PatchDiscriminator(nnx.Module):
    """x_BHWC -> logits_Bhw1: conv4x4/2 + leaky ReLU, then (n_layers - 1) x [conv4x4/2, GroupNorm,
    leaky ReLU] and one stride-1 [conv4x4, GroupNorm, leaky ReLU], channels doubling up to 8x,
    and a final 4x4 conv to one logit per patch ("SAME" padding, so h = H / 2**n_layers)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, *, rngs: nnx.Rngs,
                 dtype=None, negative_slope: float = 0.2):
        self.negative_slope = negative_slope
        self.conv_in = conv(in_channels, channels, 4, 2, rngs=rngs, dtype=dtype)
        convs, norms, ch = [], [], channels
        for n in range(1, n_layers + 1):
            out = channels * min(2 ** n, 8)
            convs.append(conv(ch, out, 4, 2 if n < n_layers else 1, rngs=rngs, dtype=dtype, use_bias=False))
            norms.append(group_norm(out, rngs=rngs, dtype=dtype))
            ch = out
        self.convs, self.norms = nnx.List(convs), nnx.List(norms)
        self.conv_out = conv(ch, 1, 4, rngs=rngs, dtype=dtype)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        lead = x_BHWC.shape[:-3]
        h = x_BHWC.reshape(-1, *x_BHWC.shape[-3:])
        h = nnx.leaky_relu(self.conv_in(h), self.negative_slope)
        for c, n in zip(self.convs, self.norms):
            h = nnx.leaky_relu(n(c(h)), self.negative_slope)
        logits = self.conv_out(h)
        return logits.reshape(*lead, *logits.shape[1:])
