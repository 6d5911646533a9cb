"""nn/conv.py: the per-tap kernel gradient is the convolution's gradient, exactly as XLA's
own up to float summation order, for every layout the models use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.nn import conv, layers


def _grads(kernel_grad, x, w, **conv_kw):
    """(output, dx, dw) of sum(conv(x, w) * r) for a fixed random r, with one kernel-grad path."""
    dn = nnx.nn.linear._conv_dimension_numbers(x.shape)  # flax's own layout: N...C, ...IO
    old, conv.KERNEL_GRAD = conv.KERNEL_GRAD, kernel_grad
    try:
        def f(x, w):
            return conv.conv_general_dilated(x, w, dimension_numbers=dn, **conv_kw)

        y = f(x, w)
        r = jax.random.normal(jax.random.key(2), y.shape)
        dx, dw = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * r), argnums=(0, 1)))(x, w)
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(f(x, w) * r), argnums=1))(x, w))
    finally:
        conv.KERNEL_GRAD = old
    return y, dx, dw, jaxpr


@pytest.mark.parametrize("spatial, kernel, padding", [
    ((6, 5), (3, 3), "SAME"),
    ((6, 5), (1, 1), "SAME"),
    ((6, 5), (3, 2), "VALID"),
    ((6, 5), (4, 3), ((2, 1), (0, 3))),  # explicit, uneven pads
    ((7,), (3,), "SAME"),
    ((3, 4, 5), (3, 3, 3), "SAME"),
])
def test_per_tap_kernel_gradient_equals_xlas(spatial, kernel, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, *spatial, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*kernel, 4, 5)), jnp.float32)
    kw = dict(window_strides=(1,) * len(spatial), padding=padding)
    y_taps, dx_taps, dw_taps, jaxpr_taps = _grads("taps", x, w, **kw)
    y_xla, dx_xla, dw_xla, jaxpr_xla = _grads("xla", x, w, **kw)
    # the two paths really differ: per-tap matmuls vs a convolution over the batch
    assert "dot_general" in jaxpr_taps and "dot_general" not in jaxpr_xla
    np.testing.assert_array_equal(y_taps, y_xla)
    np.testing.assert_allclose(dx_taps, dx_xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw_taps, dw_xla, rtol=1e-5, atol=1e-4)


def test_strided_convolutions_keep_xlas_gradient():
    x = jnp.ones((2, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 4))
    *_, jaxpr = _grads("taps", x, w, window_strides=(2, 2), padding="SAME")
    assert "dot_general" not in jaxpr


def test_the_layers_use_it_and_train_the_same():
    """layers.conv builds on it: a ResBlock's parameter gradients match XLA's path."""
    block = layers.ResBlock(8, 16, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 8)), jnp.float32)
    graph, params = nnx.split(block)

    def grads(kernel_grad):
        old, conv.KERNEL_GRAD = conv.KERNEL_GRAD, kernel_grad
        try:
            return jax.jit(jax.grad(lambda p: jnp.sum(nnx.merge(graph, p)(x) ** 2)))(params)
        finally:
            conv.KERNEL_GRAD = old

    assert block.conv1.conv_general_dilated is conv.conv_general_dilated
    for a, b in zip(jax.tree.leaves(grads("taps")), jax.tree.leaves(grads("xla"))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
