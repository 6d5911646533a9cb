"""A drop-in `lax.conv_general_dilated` that is fast on XLA:CPU.

Which way a convolution is computed is chosen per call from the path set with `use` (a
context manager) or `set_impl`, "auto" unless changed:

- "winograd": a 2-D 3x3 stride-1 convolution as Winograd's minimal filtering F(2x2, 3x3)
  (Lavin & Gray 2016): each 4x4 input tile (stride 2) and the kernel are taken to a 4x4
  "Winograd domain" by small fixed linear maps, where the convolution is 16 independent
  matmuls over channels, then mapped back to 2x2 output tiles. That is 16 multiplies per
  2x2 outputs instead of 36, so 2.25x fewer FLOPs for the forward pass; the input and
  kernel gradients are the same 16 matmuls transposed, so they get the same saving. Only
  x and the kernel are kept for the backward pass (the tiles are recomputed there).
  Errors relative to the direct convolution are ~1e-6 in float32.
- "taps": the forward pass and input gradient are XLA's, and the kernel gradient is one
  matmul per kernel tap, dW[k] = sum over batch and positions of x_pad[s + k] dy[s]^T.
  XLA:CPU computes a kernel gradient as a convolution over the batch, which ran at ~20
  GFLOP/s for the TECO encoder's 16x16 maps at 300 frames; per-tap matmuls at ~50.
- "xla": `lax.conv_general_dilated` and XLA's own gradient.
- "auto" (the default), on the CPU backend: "winograd" for float32 2-D 3x3 stride-1
  convolutions with at least WINOGRAD_MIN_CHANNELS input and output channels, "taps" for
  other stride-1 ones, "xla" for strided, dilated or grouped ones. Under differentiation
  (training) Winograd computes the value as well as the gradients, so the two match; where
  no gradient is taken (inference) the value is XLA's direct convolution, so rollouts of a
  checkpoint are bit for bit what they were before this module. Other backends: "xla"
  (cuDNN picks its own algorithms).

The path is read when a function is traced, so `use` and `set_impl` clear JAX's caches of
compiled functions: a function jitted before the change is traced anew with the new path,
never silently kept on the old one. `impl()` says which path is set.

`python bench/conv_grad.py` measures the three on the TECO encoder's shapes.

Dimension keys: N batch, S spatial positions (any number of spatial axes), C input
channels, D output channels; inputs N...C, kernels ...CD, outputs N...D (flax's layout).
For Winograd: T the 16 points of the 4x4 Winograd domain, P the 2x2 output tiles of all
N frames (h x w per frame).
"""

from __future__ import annotations

import contextlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "winograd", "taps", "xla")
_impl = "auto"  # set through set_impl / use


def impl() -> str:
    """The path convolutions take when traced: one of IMPLS."""
    return _impl


def set_impl(name: str) -> None:
    """Take path `name` from now on; functions compiled before are traced anew (jax.clear_caches)."""
    global _impl
    if name not in IMPLS:
        raise ValueError(f"teco_jax.nn.conv path {name!r}: must be one of {IMPLS}")
    if name != _impl:
        _impl = name
        jax.clear_caches()


@contextlib.contextmanager
def use(name: str):
    """`with conv.use("xla"): ...` takes path `name` inside the block and restores the previous after."""
    old = _impl
    set_impl(name)
    try:
        yield
    finally:
        set_impl(old)

# F(2x2, 3x3): the kernel transform G (4x3); the input transform B^T and output transform A^T
# are written out as adds and subtracts in _tiles_1d and _untile_1d.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
# "auto" takes Winograd from this many input and output channels on: below, the tile transforms
# cost more than the matmuls save (forward and both gradients of 64 frames of 16x16 on 2 cores,
# Winograd vs taps: 32 channels 38 vs 25 ms, 64: 90 vs 113, 256: 583 vs 692;
# `python bench/conv_grad.py --batch 64 --shapes 16:32:32,16:64:64,16:256:256`)
WINOGRAD_MIN_CHANNELS = 64


def _channels_last(lhs_ndim: int, dimension_numbers) -> bool:
    n = lhs_ndim - 2
    want = lax.conv_dimension_numbers((1,) * lhs_ndim, (1,) * lhs_ndim,
                                      ("N" + "HWD"[:n] + "C", "HWD"[:n] + "IO", "N" + "HWD"[:n] + "C"))
    return dimension_numbers == want


def _choose(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
            batch_group_count, padding) -> str:
    """The path for one call: "winograd", "taps" or "xla" (see the module docstring)."""
    if _impl == "xla" or (_impl == "auto" and jax.default_backend() != "cpu"):
        return "xla"
    ones = (1,) * (lhs.ndim - 2)
    if not (tuple(window_strides) == ones
            and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones
            and feature_group_count == 1 and batch_group_count == 1
            and dimension_numbers is not None and _channels_last(lhs.ndim, dimension_numbers)):
        return "xla"
    winograd_ok = (lhs.ndim == 4 and rhs.shape[:2] == (3, 3) and all(lo >= 0 and hi >= 0 for lo, hi in padding))
    big = min(rhs.shape[-2:]) >= WINOGRAD_MIN_CHANNELS
    if _impl == "winograd" or (_impl == "auto" and big and lhs.dtype == jnp.float32 and rhs.dtype == jnp.float32):
        return "winograd" if winograd_ok else "taps"
    return "taps"


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


def _differentiable(value, train_value, grads):
    """(x, w) -> value(x, w), differentiated as train_value(x, w) with gradients
    grads(x, w, dy) -> (dx, dw); only x and w are kept for the backward pass."""
    f = jax.custom_vjp(value)
    f.defvjp(lambda x, w: (train_value(x, w), (x, w)), lambda res, dy: grads(*res, dy))
    return f


def _tiles_1d(x, axis: int):
    """B^T d along `axis` (length 2n + 2) for the n overlapping 4-wide tiles at stride 2:
    (..., 2n+2, ...) -> (4, ..., n, ...). With e = d[0::2], o = d[1::2], tile i holds
    (e_i, o_i, e_{i+1}, o_{i+1})."""
    n = (x.shape[axis] - 2) // 2
    even, odd = lax.slice_in_dim(x, 0, None, 2, axis), lax.slice_in_dim(x, 1, None, 2, axis)
    e0, e1 = lax.slice_in_dim(even, 0, n, axis=axis), lax.slice_in_dim(even, 1, n + 1, axis=axis)
    o0, o1 = lax.slice_in_dim(odd, 0, n, axis=axis), lax.slice_in_dim(odd, 1, n + 1, axis=axis)
    return jnp.stack([e0 - e1, o0 + e1, e1 - o0, o0 - o1])


def _untile_1d(m):
    """A^T m along the leading axis: (4, ...) -> (2, ...)."""
    return jnp.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])


def _winograd(x_NHWC, w_33CD, pads, precision, preferred_element_type, primal=None):
    """A 3x3 stride-1 convolution with padding `pads` as F(2x2, 3x3) (module docstring); with
    `primal`, that function computes the value when no gradient is taken."""
    n, height, width, _ = x_NHWC.shape
    (top, bottom), (left, right) = pads
    out_h, out_w = height + top + bottom - 2, width + left + right - 2
    h, w = -(-out_h // 2), -(-out_w // 2)  # tiles per axis; an odd size is padded one more, then cropped
    pad_width = ((0, 0), (top, 2 * h + 2 - height - top), (left, 2 * w + 2 - width - left), (0, 0))
    out_dtype = preferred_element_type or x_NHWC.dtype

    def tiles(x_NHWC):  # -> v_TPC: B^T d B for every tile
        v = _tiles_1d(_tiles_1d(jnp.pad(x_NHWC, pad_width), 2), 2)  # (4 rows, 4 columns, N, h, w, C)
        return v.reshape(16, n * h * w, v.shape[-1])  # one matmul per T over all tiles: XLA's fastest layout

    def kernel(w_33CD):  # -> u_TCD = G w G^T
        g = jnp.asarray(_G, w_33CD.dtype)
        return jnp.einsum("ai,ijcd,bj->abcd", g, w_33CD, g).reshape(16, *w_33CD.shape[2:])

    def untiles(m_TPD):  # -> y_NHWD: A^T m A for every tile, the 2x2 outputs put in place
        m = m_TPD.reshape(4, 4, n, h, w, m_TPD.shape[-1])
        y = jnp.moveaxis(_untile_1d(jnp.moveaxis(_untile_1d(m), 1, 0)), 0, 1)  # (2 rows, 2 columns, N, h, w, D)
        y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * h, 2 * w, y.shape[-1])
        return y[:, :out_h, :out_w]

    def matmuls(a, b, spec):
        return jnp.einsum(spec, a, b, precision=precision, preferred_element_type=jnp.float32)

    def winograd(x, w_):
        return untiles(matmuls(tiles(x), kernel(w_), "tpc,tcd->tpd")).astype(out_dtype)

    def grads(x, w_, dy):
        v_TPC, tiles_t = jax.vjp(tiles, x)  # recomputed here rather than kept from the forward pass
        u_TCD, kernel_t = jax.vjp(kernel, w_)
        (dm_TPD,) = jax.linear_transpose(untiles, jax.ShapeDtypeStruct(
            (16, n * h * w, w_.shape[-1]), jnp.float32))(dy.astype(jnp.float32))
        dx = tiles_t(matmuls(dm_TPD, u_TCD, "tpd,tcd->tpc").astype(x.dtype))[0]
        dw = kernel_t(matmuls(v_TPC, dm_TPD, "tpc,tpd->tcd").astype(w_.dtype))[0]
        return dx, dw

    return _differentiable(primal or winograd, winograd, grads)(x_NHWC, w_33CD)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None, out_sharding=None):
    """`lax.conv_general_dilated` with the same arguments (flax's `conv_general_dilated` hook)."""
    def forward(x, w):
        return lax.conv_general_dilated(x, w, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count,
                                        batch_group_count=batch_group_count, precision=precision,
                                        preferred_element_type=preferred_element_type, out_sharding=out_sharding)

    if lhs.ndim not in (3, 4, 5) or rhs.ndim != lhs.ndim:
        return forward(lhs, rhs)
    pads = (lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding)
            if isinstance(padding, str) else tuple(tuple(p) for p in padding))
    path = _choose(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
                   batch_group_count, pads)
    if path == "xla":
        return forward(lhs, rhs)
    if path == "winograd" and out_sharding is None:  # (an explicit output sharding: the taps' XLA forward keeps it)
        return _winograd(lhs, rhs, pads, precision, preferred_element_type, primal=forward if _impl == "auto" else None)

    def taps_grads(x, w, dy):
        _, input_grad = jax.vjp(lambda x_: forward(x_, w), x)  # XLA's own: fast, and dropped when unused
        kernel_grad = _kernel_grad_by_taps(x, dy.astype(x.dtype), w.shape, pads, precision)
        return input_grad(dy)[0], kernel_grad.astype(w.dtype)

    return _differentiable(forward, forward, taps_grads)(lhs, rhs)
