"""Image and video metrics in JAX, batched.

Images are float arrays in [0, 1] with shape (..., H, W, C); every function returns one
value per image (the leading dimensions), so per-frame curves come for free.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def psnr(x: jax.Array, y: jax.Array, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB per image: 10 log10(range^2 / MSE)."""
    mse = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-20))


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
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.lax.conv_general_dilated(x, win.reshape(1, k, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
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
