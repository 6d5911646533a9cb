import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from teco_jax.models.discriminator import PatchDiscriminator
from teco_jax.models.vqgan import VQGAN
from teco_jax.nn.util import count_params


def _config(resolution=32, channel_mult=(1, 1), **kw):
    # few distinct parameter shapes: eager initialisation compiles once per shape, which dominates test time
    c = dict(resolution=resolution, channels=8, channel_mult=channel_mult, num_res_blocks=1, latent_dim=8,
             codebook_size=32, code_dim=4, beta=0.25)
    c.update(kw)
    return ml_collections.ConfigDict(c)


def _images(shape, seed=0):
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def tiny():
    return VQGAN(_config(), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("resolution, channel_mult", [(64, (1, 1, 2)), (128, (1, 1, 2, 2))])
def test_shapes_give_16x16_codes(resolution, channel_mult):
    c = _config(resolution, channel_mult, channels=4, num_mid_blocks=1)
    model = nnx.eval_shape(lambda: VQGAN(c, rngs=nnx.Rngs(0)))
    assert model.latent_shape == (16, 16)
    x = jax.ShapeDtypeStruct((2, resolution, resolution, 3), jnp.float32)
    x_rec, aux = nnx.eval_shape(lambda m, x: m(x), model, x)
    assert x_rec.shape == (2, resolution, resolution, 3)
    assert aux["codes"].shape == (2, 16, 16) and aux["codes"].dtype == jnp.int32
    assert aux["z_q"].shape == (2, 16, 16, c.latent_dim)


def test_decode_codes_matches_decode_of_z_q(tiny):
    x = _images((2, 32, 32, 3))

    @nnx.jit
    def both(m, x):
        enc = m.encode(x)
        return m.decode(enc["z_q"]), m.decode_codes(enc["codes"])

    a, b = both(tiny, x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_extra_leading_dims(tiny):
    x = _images((2, 3, 32, 32, 3))
    f = nnx.jit(lambda m, x: m(x))
    rec, aux = f(tiny, x)
    rec_flat, aux_flat = f(tiny, x.reshape(6, 32, 32, 3))
    assert rec.shape == x.shape and aux["codes"].shape == (2, 3, 16, 16) and aux["z_q"].shape == (2, 3, 16, 16, 8)
    np.testing.assert_allclose(np.asarray(rec).reshape(rec_flat.shape), np.asarray(rec_flat), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(aux["codes"]).reshape(6, 16, 16), np.asarray(aux_flat["codes"]))
    dec = nnx.jit(lambda m, c: m.decode_codes(c))(tiny, aux["codes"])
    assert dec.shape == x.shape


def test_gradient_reaches_encoder_through_straight_through(tiny):
    x = _images((2, 32, 32, 3))
    g = _images((2, 32, 32, 3), seed=1)

    # reconstruction term only (no VQ loss): the encoder is trained through the straight-through path
    @nnx.jit
    def grads(m, x):
        return nnx.grad(lambda m: jnp.sum(m(x)[0] * g))(m)

    gr = grads(tiny, x)
    for name in ("conv_in", "conv_out"):
        assert np.abs(np.asarray(gr["encoder"][name]["kernel"][...])).max() > 0, name
    assert np.abs(np.asarray(gr["codebook"]["in_proj"]["kernel"][...])).max() > 0
    assert np.abs(np.asarray(gr["decoder"]["conv_out"]["kernel"][...])).max() > 0
    # the code table itself is trained only by the VQ loss
    assert np.abs(np.asarray(gr["codebook"]["codebook"][...])).max() == 0


def test_decoder_last_layer_is_a_conv(tiny):
    dec = tiny.decoder
    assert isinstance(dec.conv_out, nnx.Conv)
    assert dec.conv_out.kernel[...].shape[-1] == 3
    z = _images((2, 16, 16, 8))

    @nnx.jit
    def outs(dec, z):
        h = dec.features(z)
        return dec(z), dec.last_layer(h), dec.last_layer(h, dec.conv_out.kernel[...])

    full, a, b = outs(dec, z)
    np.testing.assert_allclose(np.asarray(a), np.asarray(full), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(b), np.asarray(full), rtol=1e-4, atol=1e-5)


def test_param_count_abstract_equals_real_and_axes_present():
    c = _config()
    real = VQGAN(c, rngs=nnx.Rngs(0))
    abstract = nnx.eval_shape(lambda: VQGAN(c, rngs=nnx.Rngs(0)))
    n = count_params(real)
    assert n == count_params(abstract) == count_params(nnx.state(real, nnx.Param)) > 0
    assert n == sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(real, nnx.Param)))
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        assert "out_sharding" in var.get_metadata(), path


def test_bad_resolution_raises():
    with pytest.raises(ValueError):
        VQGAN(_config(30, (1, 2, 2)), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def disc():
    return PatchDiscriminator(3, channels=8, n_layers=1, rngs=nnx.Rngs(0))


def test_patch_discriminator(disc):
    out = nnx.jit(lambda d, x: d(x))(disc, _images((2, 3, 32, 32, 3)))
    assert out.shape == (2, 3, 16, 16, 1)
    assert np.isfinite(np.asarray(out)).all()
    for path, var in nnx.to_flat_state(nnx.state(disc, nnx.Param)):
        assert "out_sharding" in var.get_metadata(), path
    abstract = nnx.eval_shape(lambda: PatchDiscriminator(3, channels=8, n_layers=1, rngs=nnx.Rngs(0)))
    assert count_params(abstract) == count_params(disc)
    # 4x4 convs: 3->8 (stride 2, +bias), 8->16 (stride 1, GroupNorm), 16->1 (+bias)
    assert count_params(disc) == 16 * (3 * 8 + 8 * 16 + 16) + 8 + 2 * 16 + 1


def test_patch_discriminator_three_layers():
    d = nnx.eval_shape(lambda: PatchDiscriminator(3, channels=8, n_layers=3, rngs=nnx.Rngs(0)))
    out = nnx.eval_shape(lambda d, x: d(x), d, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
    assert out.shape == (2, 8, 8, 1)
    # 4x4 convs: 3->8 (+bias), 8->16, 16->32 (stride 2), 32->64 (stride 1), 64->1 (+bias), 3 GroupNorms
    expected = 16 * (3 * 8 + 8 * 16 + 16 * 32 + 32 * 64 + 64) + 8 + 1 + 2 * (16 + 32 + 64)
    assert count_params(d) == expected
