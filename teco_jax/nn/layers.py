"""Shared layers. Every parameter carries logical axis names for sharding.

Logical axes (mapped to mesh axes by the config's `sharding_rules`, see parallel.py):
    embed     transformer width            mlp       MLP hidden units
    heads     attention heads x head dim    vocab     output classes / codebook entries
    conv_in   conv input channels          conv_out  conv output channels
    norm      normalisation scales/biases (kept replicated)

Dimension keys used in docstrings: B batch, T time, H/W height/width, C channels.
`dtype` is the compute dtype (None = that of the inputs); parameters stay float32.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax import parallel
from teco_jax.nn import conv as conv_ops

Axes = tuple[str | None, ...]


def dense(in_features: int, out_features: int, axes: Axes = ("embed", "mlp"), *, rngs: nnx.Rngs,
          use_bias: bool = True, dtype=None, kernel_init=None) -> nnx.Linear:
    """A Linear whose kernel is sharded as `axes` (input, output) and bias as the output."""
    kw = {} if kernel_init is None else {"kernel_init": kernel_init}
    return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype, rngs=rngs,
                      kernel_metadata={"out_sharding": axes}, bias_metadata={"out_sharding": axes[-1:]}, **kw)


class Conv(nnx.Conv):
    """nnx.Conv whose output keeps the batch layout when traced under a device mesh (a
    workaround for an XLA partitioner bug; see parallel.constrain_batch) and whose kernel
    gradient is fast on CPU (nn/conv.py)."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return parallel.constrain_batch(super().__call__(inputs))


def conv(in_features: int, out_features: int, kernel_size: int | Sequence[int] = 3, strides: int = 1, *,
         rngs: nnx.Rngs, axes: Axes = ("conv_in", "conv_out"), padding="SAME", use_bias: bool = True,
         dtype=None, kernel_init=None) -> nnx.Conv:
    """A 2-D (or N-D, from kernel_size) convolution with channel axes sharded as `axes`."""
    ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    kw = {} if kernel_init is None else {"kernel_init": kernel_init}
    return Conv(in_features, out_features, ks, strides, padding=padding, use_bias=use_bias, dtype=dtype,
                rngs=rngs, conv_general_dilated=conv_ops.conv_general_dilated,
                kernel_metadata={"out_sharding": (None,) * len(ks) + tuple(axes)},
                bias_metadata={"out_sharding": tuple(axes[-1:])}, **kw)


def layer_norm(features: int, *, rngs: nnx.Rngs, use_bias: bool = True, dtype=None) -> nnx.LayerNorm:
    """LayerNorm; its statistics are computed in float32 whatever the compute dtype."""
    return nnx.LayerNorm(features, use_bias=use_bias, dtype=dtype, rngs=rngs, epsilon=1e-5,
                         scale_metadata={"out_sharding": ("norm",)}, bias_metadata={"out_sharding": ("norm",)})


def group_norm(features: int, *, rngs: nnx.Rngs, groups: int = 32, dtype=None) -> nnx.GroupNorm:
    """GroupNorm with at most `groups` groups of at least 4 channels (fewer when the channels
    do not divide): narrow layers keep some per-channel level information, which instance
    normalisation (groups of 1) would remove."""
    g = max(1, min(groups, features // 4))
    while features % g:
        g -= 1
    return nnx.GroupNorm(features, num_groups=g, dtype=dtype, rngs=rngs, epsilon=1e-5,
                         scale_metadata={"out_sharding": ("norm",)}, bias_metadata={"out_sharding": ("norm",)})


class ResBlock(nnx.Module):
    """Pre-activation residual block: (GroupNorm, swish, conv3x3) x 2 plus a (1x1) skip.

    x_BHWC -> y_BHWD with D = out_features.
    """

    def __init__(self, in_features: int, out_features: int | None = None, *, rngs: nnx.Rngs, dtype=None):
        out_features = out_features or in_features
        self.norm1 = group_norm(in_features, rngs=rngs, dtype=dtype)
        self.conv1 = conv(in_features, out_features, 3, rngs=rngs, dtype=dtype)
        self.norm2 = group_norm(out_features, rngs=rngs, dtype=dtype)
        self.conv2 = conv(out_features, out_features, 3, rngs=rngs, dtype=dtype)
        self.skip = (conv(in_features, out_features, 1, rngs=rngs, dtype=dtype)
                     if in_features != out_features else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(nnx.swish(self.norm1(x)))
        h = self.conv2(nnx.swish(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class Downsample(nnx.Module):
    """Halves H and W with a stride-2 3x3 convolution. x_BHWC -> y_B(H/2)(W/2)C."""

    def __init__(self, features: int, *, rngs: nnx.Rngs, dtype=None):
        self.conv = conv(features, features, 3, 2, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample(nnx.Module):
    """Doubles H and W: nearest-neighbour repeat then a 3x3 convolution. x_BHWC -> y_B(2H)(2W)C."""

    def __init__(self, features: int, *, rngs: nnx.Rngs, dtype=None):
        self.conv = conv(features, features, 3, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)
        return self.conv(x)
