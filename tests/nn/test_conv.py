"""nn/conv.py: every path computes the convolution and its gradients as XLA's direct one does
(up to float rounding), for every layout the models use; Winograd does it in fewer FLOPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.nn import conv, layers


def _with(impl, fn, *args):
    with conv.use(impl):
        return fn(*args)


def _grads(impl, x, w, **conv_kw):
    """(output, dx, dw, jaxpr of the gradient) of sum(conv(x, w) * r) for a fixed random r."""
    dn = nnx.nn.linear._conv_dimension_numbers(x.shape)  # flax's own layout: N...C, ...IO

    def run():
        def f(x, w):
            return conv.conv_general_dilated(x, w, dimension_numbers=dn, **conv_kw)

        y = f(x, w)
        r = jax.random.normal(jax.random.key(2), y.shape)
        loss = lambda x, w: jnp.sum(f(x, w) * r)  # noqa: E731
        dx, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
        return y, dx, dw, str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, w))

    return _with(impl, run)


CASES = [
    ((6, 5), (3, 3), "SAME"),  # odd width: Winograd pads one more column and crops it
    ((8, 8), (3, 3), "SAME"),
    ((6, 5), (3, 3), "VALID"),
    ((6, 7), (3, 3), ((2, 1), (0, 3))),  # explicit, uneven pads
    ((6, 5), (1, 1), "SAME"),
    ((6, 5), (3, 2), "VALID"),
    ((6, 5), (4, 3), ((2, 1), (0, 3))),
    ((7,), (3,), "SAME"),
    ((3, 4, 5), (3, 3, 3), "SAME"),
]


@pytest.mark.parametrize("impl", ["taps", "winograd"])
@pytest.mark.parametrize("spatial, kernel, padding", CASES)
def test_paths_equal_xlas_convolution_and_gradients(impl, spatial, kernel, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, *spatial, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*kernel, 4, 5)), jnp.float32)
    kw = dict(window_strides=(1,) * len(spatial), padding=padding)
    y, dx, dw, jaxpr = _grads(impl, x, w, **kw)
    y_xla, dx_xla, dw_xla, jaxpr_xla = _grads("xla", x, w, **kw)
    winograd = impl == "winograd" and kernel == (3, 3)  # other kernels fall back to the taps
    # the paths really differ: Winograd has no convolution at all, the taps' kernel gradient is
    # matmuls, XLA's gradient has none
    assert "dot_general" in jaxpr and "dot_general" not in jaxpr_xla
    assert ("conv_general_dilated" in jaxpr) != winograd
    np.testing.assert_allclose(y, y_xla, rtol=1e-5, atol=1e-5 if winograd else 0)
    np.testing.assert_allclose(dx, dx_xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, dw_xla, rtol=1e-5, atol=1e-4)


def test_auto_trains_with_winograd_and_infers_with_xlas_forward():
    """Under "auto" a gradient-free call (a rollout) is XLA's direct convolution, bit for bit;
    a differentiated one (a train step) is Winograd's, value and gradients."""
    rng = np.random.default_rng(1)
    c = conv.WINOGRAD_MIN_CHANNELS
    x = jnp.asarray(rng.normal(size=(2, 8, 8, c)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, c, c)), jnp.float32)
    kw = dict(window_strides=(1, 1), padding="SAME")
    y_auto, dx_auto, dw_auto, jaxpr_auto = _grads("auto", x, w, **kw)
    y_xla, *_ = _grads("xla", x, w, **kw)
    _, dx_wino, dw_wino, _ = _grads("winograd", x, w, **kw)
    np.testing.assert_array_equal(y_auto, y_xla)
    assert "conv_general_dilated" not in jaxpr_auto
    np.testing.assert_array_equal(dx_auto, dx_wino)
    np.testing.assert_array_equal(dw_auto, dw_wino)


def test_winograd_takes_fewer_flops():
    """F(2x2, 3x3): 16 multiplies per 2x2 outputs instead of 36, in all three passes."""
    x = jnp.ones((4, 16, 16, 64))
    w = jnp.ones((3, 3, 64, 64))
    dn = nnx.nn.linear._conv_dimension_numbers(x.shape)

    def flops(impl):
        def loss(x, w):
            return jnp.sum(conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) ** 2)

        return _with(impl, lambda: jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().cost_analysis()["flops"])

    direct = 3 * 2 * 4 * 16 * 16 * 9 * 64 * 64  # forward, input and kernel gradients
    assert flops("xla") == pytest.approx(direct, rel=0.15)  # XLA skips some of the zero padding
    assert flops("winograd") < 0.5 * direct  # 16 / 36 of the matmuls, plus the tile transforms


def test_auto_picks_by_shape_and_dtype():
    c = conv.WINOGRAD_MIN_CHANNELS
    x, w3, w1 = jnp.ones((1, 8, 8, c)), jnp.ones((3, 3, c, c)), jnp.ones((1, 1, c, c))
    dn = nnx.nn.linear._conv_dimension_numbers(x.shape)

    def path(x, w, strides=(1, 1)):
        pads = ((w.shape[0] // 2,) * 2,) * 2
        return conv._choose(x, w, strides, None, None, dn, 1, 1, pads)

    assert path(x, w3) == "winograd"
    assert path(x, w1) == "taps"
    assert path(x, w3[..., : c - 1]) == "taps"  # too few channels: the tile transforms would cost more
    assert path(x.astype(jnp.bfloat16), w3.astype(jnp.bfloat16)) == "taps"  # Winograd only in float32
    assert path(x, w3, strides=(2, 2)) == "xla"
    assert _with("xla", path, x, w3) == "xla"
    with pytest.raises(ValueError, match="path 'fast'"):
        _with("fast", path, x, w3)
    assert conv.impl() == "auto"  # a refused path leaves the one that was set


def test_strided_convolutions_keep_xlas_gradient():
    x = jnp.ones((2, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 4))
    *_, jaxpr = _grads("winograd", x, w, window_strides=(2, 2), padding="SAME")
    assert "dot_general" not in jaxpr


def test_the_layers_use_it_and_train_the_same():
    """layers.conv builds on it: a ResBlock's parameter gradients match XLA's path."""
    block = layers.ResBlock(8, 16, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 8)), jnp.float32)
    graph, params = nnx.split(block)

    def grads(impl):
        return _with(impl, lambda: jax.jit(jax.grad(lambda p: jnp.sum(nnx.merge(graph, p)(x) ** 2)))(params))

    assert block.conv1.conv_general_dilated is conv.conv_general_dilated
    convs = lambda impl: _with(impl, lambda: str(jax.make_jaxpr(block)(x)).count("conv_general_dilated["))  # noqa: E731
    assert (convs("xla"), convs("winograd")) == (3, 1)  # the layers' 3x3 convolutions really take the path
    reference = jax.tree.leaves(grads("xla"))
    for impl in ("taps", "winograd"):
        for a, b in zip(jax.tree.leaves(grads(impl)), reference):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_changing_the_path_retraces_functions_compiled_before():
    """The path is read at trace time: `use` must not leave a jitted function on the old path."""
    traces = []
    dn = nnx.nn.linear._conv_dimension_numbers((2, 8, 8, 64))

    @jax.jit
    def f(x, w):
        traces.append(conv.impl())
        return conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)

    x, w = jnp.ones((2, 8, 8, 64)), jnp.ones((3, 3, 64, 64))
    f(x, w)
    with conv.use("xla"):
        f(x, w)
    f(x, w)
    assert traces == ["auto", "xla", "auto"]
