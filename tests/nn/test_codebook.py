import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.nn.codebook import L2Codebook, l2_normalize


def _codebook(in_dim=6, k=16, d=4, beta=0.25, seed=0):
    return L2Codebook(in_dim, k, d, beta=beta, rngs=nnx.Rngs(seed))


def _z(shape=(2, 3, 5, 6), seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def _normalized_inputs(cb, z):
    return np.asarray(l2_normalize(cb.in_proj(z)))


def test_shapes_dtypes_and_any_leading_dims():
    cb, f = _codebook(), nnx.jit(lambda cb, z: cb(z))
    for shape in [(2, 3, 5, 6), (4, 6), (2, 2, 3, 3, 6)]:
        out = f(cb, _z(shape))
        assert out["z_q"].shape == shape
        assert out["codes"].shape == shape[:-1] and out["codes"].dtype == jnp.int32
        for k in ("loss", "perplexity", "usage"):
            assert out[k].shape == ()


def test_unit_norms_and_nearest_code_is_cosine_argmax():
    cb, z = _codebook(), _z()
    zn = _normalized_inputs(cb, z)
    e = np.asarray(cb.normalized_codebook())
    np.testing.assert_allclose(np.linalg.norm(zn, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, atol=1e-5)
    raw = np.asarray(cb.codebook[...])
    cos = zn @ (raw / np.linalg.norm(raw, axis=-1, keepdims=True)).T
    out = cb(z)
    np.testing.assert_array_equal(np.asarray(out["codes"]), cos.argmax(-1))
    # forward value of z_q is the projected code vector, the same as lookup(codes)
    np.testing.assert_allclose(np.asarray(out["z_q"]), np.asarray(cb.lookup(out["codes"])), atol=1e-5)
    np.testing.assert_allclose(np.asarray(cb.code_vectors(out["codes"])), e[np.asarray(out["codes"])], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(cb.code_vectors(out["codes"])), axis=-1), 1.0, atol=1e-5)


def test_loss_matches_hand_computation():
    beta = 0.3
    cb, z = _codebook(beta=beta), _z()
    zn = _normalized_inputs(cb, z)
    e = np.asarray(cb.normalized_codebook())
    codes = (zn @ e.T).argmax(-1)
    sq = np.mean((zn - e[codes]) ** 2)
    np.testing.assert_allclose(float(cb(z)["loss"]), (1 + beta) * sq, rtol=1e-5)
    # squared distance between unit vectors is 2 - 2 cos
    np.testing.assert_allclose(np.sum((zn - e[codes]) ** 2, -1), 2 - 2 * np.sum(zn * e[codes], -1), atol=1e-5)


def test_straight_through_gradient_is_identity_in_code_space():
    cb, z = _codebook(), _z()
    g = jax.random.normal(jax.random.key(2), z.shape)
    grad_q = jax.grad(lambda z: jnp.sum(cb(z)["z_q"] * g))(z)
    grad_id = jax.grad(lambda z: jnp.sum(cb.out_proj(l2_normalize(cb.in_proj(z))) * g))(z)
    np.testing.assert_allclose(np.asarray(grad_q), np.asarray(grad_id), rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(grad_q)).max() > 0

    # in the normalized code space itself: d<z_q, g>/d z_n == out_proj^T g, the identity Jacobian
    zn = l2_normalize(cb.in_proj(z))
    w = cb.out_proj.kernel[...]

    def through_quantizer(zn):
        e = cb.normalized_codebook()
        q = e[jnp.argmax(zn @ e.T, axis=-1)]
        return jnp.sum(cb.out_proj(zn + jax.lax.stop_gradient(q - zn)) * g)

    np.testing.assert_allclose(np.asarray(jax.grad(through_quantizer)(zn)), np.asarray(g @ w.T), rtol=1e-4, atol=1e-6)


def _loss_grads(cb, z):
    graphdef, params = nnx.split(cb, nnx.Param)

    def loss(params, z):
        return nnx.merge(graphdef, params)(z)["loss"]

    return jax.grad(loss, argnums=(0, 1))(params, z)


def test_gradient_routing_codebook_term_vs_commitment_term():
    z = _z()
    g0, gz0 = _loss_grads(_codebook(beta=0.0), z)
    g1, gz1 = _loss_grads(_codebook(beta=1.0), z)
    # beta = 0: the encoder side (input, input projection) gets no gradient from the VQ loss
    assert np.abs(np.asarray(gz0)).max() == 0
    assert np.abs(np.asarray(g0["in_proj"]["kernel"][...])).max() == 0
    # the codebook table gets gradient from the codebook term only: independent of beta
    assert np.abs(np.asarray(g0["codebook"][...])).max() > 0
    np.testing.assert_allclose(np.asarray(g0["codebook"][...]), np.asarray(g1["codebook"][...]), atol=1e-7)
    # beta > 0: the commitment term reaches the encoder side
    assert np.abs(np.asarray(gz1)).max() > 0
    # the output projection is not touched by the VQ loss
    assert np.abs(np.asarray(g1["out_proj"]["kernel"][...])).max() == 0


@pytest.mark.parametrize("assign, perplexity, usage", [
    ([0, 0, 1, 1], 2.0, 0.5),
    ([0, 1, 2, 3], 4.0, 1.0),
    ([2, 2, 2, 2], 1.0, 0.25),
    ([0, 0, 0, 1], float(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))), 0.5),
])
def test_perplexity_and_usage_on_crafted_batch(assign, perplexity, usage):
    cb = L2Codebook(4, 4, 4, rngs=nnx.Rngs(0))
    cb.in_proj.kernel[...] = jnp.eye(4)
    cb.in_proj.bias[...] = jnp.zeros(4)
    cb.codebook[...] = 3.0 * jnp.eye(4)  # unnormalized on purpose
    z = (jnp.eye(4)[jnp.array(assign)] * 2.0 + 0.1).reshape(1, 2, 2, 4)
    out = cb(z)
    np.testing.assert_array_equal(np.asarray(out["codes"]).ravel(), assign)
    np.testing.assert_allclose(float(out["perplexity"]), perplexity, rtol=1e-5)
    np.testing.assert_allclose(float(out["usage"]), usage, rtol=1e-6)


def test_parameters_carry_logical_axes_and_jit_matches_eager():
    cb, z = _codebook(), _z()
    assert cb.codebook.get_metadata()["out_sharding"] == ("vocab", None)
    for path, var in nnx.to_flat_state(nnx.state(cb, nnx.Param)):
        assert "out_sharding" in var.get_metadata(), path
    eager = cb(z)
    jitted = nnx.jit(lambda m, z: m(z))(cb, z)
    for k in eager:
        np.testing.assert_allclose(np.asarray(eager[k]), np.asarray(jitted[k]), rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_dtype():
    cb = L2Codebook(6, 16, 4, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    out = cb(_z().astype(jnp.bfloat16))
    assert out["z_q"].dtype == jnp.bfloat16 and out["loss"].dtype == jnp.float32
    assert cb.codebook[...].dtype == jnp.float32
