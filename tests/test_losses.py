import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teco_jax import losses
from teco_jax.models import lpips as lpips_mod


# ----------------------------------------------------------------- adversarial / reconstruction

def test_hinge_losses_known_values():
    real = jnp.array([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2     -> mean 2.5/3
    fake = jnp.array([-2.0, 0.0, 1.0])  # relu(1 + f) = 0, 1, 2       -> mean 1
    np.testing.assert_allclose(float(losses.hinge_d_loss(real, fake)), 0.5 * (2.5 / 3 + 1.0), rtol=1e-6)
    np.testing.assert_allclose(float(losses.hinge_g_loss(fake)), 1.0 / 3, rtol=1e-6)
    # a perfect discriminator (margins met) has zero loss
    assert float(losses.hinge_d_loss(jnp.full((2, 4, 4, 1), 3.0), jnp.full((2, 4, 4, 1), -3.0))) == 0.0


def test_non_saturating_losses():
    r, f = np.array([0.3, -1.2]), np.array([2.0, -0.4])
    sig = lambda x: 1 / (1 + np.exp(-x))
    d_ref = 0.5 * (np.mean(-np.log(sig(r))) + np.mean(-np.log(1 - sig(f))))
    np.testing.assert_allclose(float(losses.non_saturating_d_loss(jnp.array(r), jnp.array(f))), d_ref, rtol=1e-5)
    np.testing.assert_allclose(float(losses.non_saturating_g_loss(jnp.array(f))), np.mean(-np.log(sig(f))), rtol=1e-5)


def test_l1_l2():
    x, y = jnp.array([[1.0, -2.0], [0.5, 0.0]]), jnp.array([[0.0, 0.0], [0.5, 1.0]])
    np.testing.assert_allclose(float(losses.l1(x, y)), (1 + 2 + 0 + 1) / 4)
    np.testing.assert_allclose(float(losses.l2(x, y)), (1 + 4 + 0 + 1) / 4)


def test_adaptive_gan_weight_hand_computed():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 2)).astype(np.float32)   # y = x @ W
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)
    rec = lambda W: jnp.sum((x @ W - y) ** 2)
    gan = lambda W: -jnp.sum(x @ W)
    g_rec = 2 * x.T @ (x @ W - y)                    # d/dW sum((xW - y)^2)
    g_gan = -x.T @ np.ones((5, 2), np.float32)        # d/dW -sum(xW)
    expected = np.linalg.norm(g_rec) / (np.linalg.norm(g_gan) + 1e-6)
    got = losses.adaptive_gan_weight(rec, gan, jnp.asarray(W))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # clipping, and no gradient flows through the weight
    np.testing.assert_allclose(float(losses.adaptive_gan_weight(rec, gan, jnp.asarray(W), max_weight=0.01)), 0.01)
    no_gan = lambda W: 0.0 * jnp.sum(W)  # noqa: E731
    assert float(losses.adaptive_gan_weight(rec, no_gan, jnp.asarray(W), max_weight=7.0)) == 7.0
    g = jax.grad(lambda W: losses.adaptive_gan_weight(rec, gan, W) * jnp.sum(W))(jnp.asarray(W))
    np.testing.assert_allclose(np.asarray(g), float(got) * np.ones_like(W), rtol=1e-5)
    # the same through jit
    np.testing.assert_allclose(float(jax.jit(lambda W: losses.adaptive_gan_weight(rec, gan, W))(W)), expected, rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.01, 0.3])
def test_label_smoothed_cross_entropy_matches_numpy(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, size=(2, 3, 4))
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    target = (1 - smoothing) * np.eye(7)[labels] + smoothing / 7
    ref = np.mean(-(target * logp).sum(-1))
    got = losses.cross_entropy_with_label_smoothing(jnp.asarray(logits), jnp.asarray(labels), smoothing)
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)
    mask = rng.integers(0, 2, size=(2, 3, 4)).astype(bool)
    got_m = losses.cross_entropy_with_label_smoothing(jnp.asarray(logits), jnp.asarray(labels), smoothing, mask=mask)
    np.testing.assert_allclose(float(got_m), (-(target * logp).sum(-1))[mask].mean(), rtol=1e-5)


# ----------------------------------------------------------------- LPIPS

@pytest.fixture(scope="module")
def lp():
    return lpips_mod.LPIPS("vgg16")  # the package's own weights, no network


def _smooth_image(size=32):
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    img = np.stack([np.sin(2 * xx), np.cos(3 * yy) * 0.8, xx * yy], -1)
    return img.astype(np.float32)


def test_lpips_loads_and_caches(lp):
    assert lpips_mod.load_params("vgg16") is lp.params  # cached per net
    leaves = jax.tree.leaves(lp.params)
    assert all(isinstance(a, jax.Array) for a in leaves)
    assert sum(a.size for a in leaves) > 14_000_000  # VGG16 conv trunk + linear heads
    with pytest.raises(ValueError):
        lpips_mod.load_params("resnet")


def test_lpips_zero_on_identical_and_grows_with_noise(lp):
    img = _smooth_image()
    noise = np.random.default_rng(0).normal(size=img.shape).astype(np.float32)
    x = np.stack([img] * 4)
    y = np.stack([np.clip(img + s * noise, -1, 1) for s in (0.0, 0.05, 0.2, 0.6)])
    f = jax.jit(lambda p, x, y: lp(x, y, params=p))
    d = np.asarray(f(lp.params, x, y))
    assert d.shape == (4,)
    assert abs(d[0]) < 1e-6
    assert np.all(np.diff(d) > 0), d
    # explicit params give the same as the built-in ones
    np.testing.assert_allclose(np.asarray(lp(x, y)), d, rtol=1e-4, atol=1e-6)


def test_lpips_gradient_finite(lp):
    img = jnp.asarray(_smooth_image())[None]
    y = jnp.clip(img + 0.1 * jax.random.normal(jax.random.key(0), img.shape), -1, 1)
    g = jax.jit(jax.grad(lambda p, x: jnp.sum(lp(x, y, params=p)), argnums=1))(lp.params, img)
    assert g.shape == img.shape
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
