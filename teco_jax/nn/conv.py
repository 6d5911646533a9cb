"""A drop-in `lax.conv_general_dilated` whose kernel gradient is fast on XLA:CPU.

XLA:CPU computes a convolution's kernel gradient as a convolution over the batch, which
runs at 20 GFLOP/s on this 2-core CPU for the TECO encoder's 3x3 convolutions on 16x16
maps at 300 frames (input gradient 84-97, matmul peak 118 that day; `python
bench/conv_grad.py`). For a stride-1 convolution the kernel gradient is, per kernel tap k,
one matmul: dW[k] = sum over batch and positions of x_pad[s + k] dy[s]^T. This module
computes it that way (50 GFLOP/s there) and leaves the forward pass and the input gradient
to XLA. Other backends, strided, dilated or grouped convolutions use
`lax.conv_general_dilated` unchanged.

Dimension keys: N batch, S spatial positions (any number of spatial axes), C input
channels, D output channels; inputs N...C, kernels ...CD, outputs N...D (flax's layout).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax

# "auto": per-tap matmuls on the CPU backend, XLA's own gradient elsewhere; "taps" or "xla" force one.
KERNEL_GRAD = "auto"


def _channels_last(lhs_ndim: int, dimension_numbers) -> bool:
    n = lhs_ndim - 2
    want = lax.conv_dimension_numbers((1,) * lhs_ndim, (1,) * lhs_ndim,
                                      ("N" + "HWD"[:n] + "C", "HWD"[:n] + "IO", "N" + "HWD"[:n] + "C"))
    return dimension_numbers == want


def _use_taps(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
              batch_group_count) -> bool:
    if KERNEL_GRAD == "xla" or (KERNEL_GRAD == "auto" and jax.default_backend() != "cpu"):
        return False
    ones = (1,) * (lhs.ndim - 2)
    return (lhs.ndim in (3, 4, 5) and tuple(window_strides) == ones
            and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones
            and feature_group_count == 1 and batch_group_count == 1
            and dimension_numbers is not None and _channels_last(lhs.ndim, dimension_numbers))


def _kernel_grad_by_taps(x_NSC, dy_NSD, kernel_shape, pads, precision):
    """dW[k] = sum_{n, s} x_pad[n, s + k] dy[n, s]^T for every tap k of the kernel, one tap at a
    time (a scan, so one shifted window of x is alive at once, not one per tap)."""
    x_pad = jnp.pad(x_NSC, ((0, 0), *pads, (0, 0)))
    out_spatial = dy_NSD.shape[1:-1]
    batch_and_space = tuple(range(dy_NSD.ndim - 1))
    offsets = jnp.asarray(list(itertools.product(*(range(n) for n in kernel_shape[:-2]))), jnp.int32)

    def tap(_, k):
        window = lax.dynamic_slice(x_pad, (0, *k, 0), (x_pad.shape[0], *out_spatial, x_pad.shape[-1]))
        return None, lax.dot_general(window, dy_NSD, ((batch_and_space, batch_and_space), ((), ())),
                                     precision=precision, preferred_element_type=jnp.float32)

    _, taps = lax.scan(tap, None, offsets)
    return taps.reshape(kernel_shape)  # float32


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None, **kw):
    """`lax.conv_general_dilated` with the same arguments (flax's `conv_general_dilated` hook)."""
    def forward(x, w):
        return lax.conv_general_dilated(x, w, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count,
                                        batch_group_count=batch_group_count, precision=precision,
                                        preferred_element_type=preferred_element_type, **kw)

    if not _use_taps(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
                     batch_group_count):
        return forward(lhs, rhs)
    pads = (lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding)
            if isinstance(padding, str) else tuple(tuple(p) for p in padding))

    @jax.custom_vjp
    def conv(x, w):
        return forward(x, w)

    def fwd(x, w):
        return forward(x, w), (x, w)

    def bwd(res, dy):
        x, w = res
        _, input_grad = jax.vjp(lambda x_: forward(x_, w), x)  # XLA's own: fast, and dropped when unused
        kernel_grad = _kernel_grad_by_taps(x, dy.astype(x.dtype), w.shape, pads, precision)
        return input_grad(dy)[0], kernel_grad.astype(w.dtype)

    conv.defvjp(fwd, bwd)
    return conv(lhs, rhs)
