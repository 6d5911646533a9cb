"""Loss functions (pure). Scalars are float32 means unless said otherwise.

Dimension keys: B batch (any leading dims), K classes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x).astype(jnp.float32)


# ----------------------------------------------------------------- reconstruction

def l1(x: jax.Array, y: jax.Array) -> jax.Array:
    """mean |x - y|."""
    return jnp.mean(jnp.abs(_f32(x) - _f32(y)))


def l2(x: jax.Array, y: jax.Array) -> jax.Array:
    """mean (x - y)^2."""
    return jnp.mean(jnp.square(_f32(x) - _f32(y)))


# ----------------------------------------------------------------- adversarial

def hinge_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))  (as in taming-transformers)."""
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - _f32(logits_real))) + jnp.mean(jax.nn.relu(1.0 + _f32(logits_fake))))


def hinge_g_loss(logits_fake: jax.Array) -> jax.Array:
    """-mean D(x_hat)."""
    return -jnp.mean(_f32(logits_fake))


def non_saturating_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """0.5 * (-mean log sigmoid(D(x)) - mean log(1 - sigmoid(D(x_hat)))), the original GAN loss."""
    return 0.5 * (jnp.mean(jax.nn.softplus(-_f32(logits_real))) + jnp.mean(jax.nn.softplus(_f32(logits_fake))))


def non_saturating_g_loss(logits_fake: jax.Array) -> jax.Array:
    """-mean log sigmoid(D(x_hat))."""
    return jnp.mean(jax.nn.softplus(-_f32(logits_fake)))


def adaptive_weight_from_grads(grad_rec: jax.Array, grad_gan: jax.Array, max_weight: float = 1e4) -> jax.Array:
    """stop_gradient(clip(||grad_rec|| / (||grad_gan|| + 1e-6), 0, max_weight))."""
    w = jnp.linalg.norm(_f32(grad_rec).ravel()) / (jnp.linalg.norm(_f32(grad_gan).ravel()) + 1e-6)
    return jax.lax.stop_gradient(jnp.clip(w, 0.0, max_weight))


def adaptive_gan_weight(rec_loss_fn: Callable[[jax.Array], jax.Array], gan_loss_fn: Callable[[jax.Array], jax.Array],
                        last_layer_kernel: jax.Array, max_weight: float = 1e4) -> jax.Array:
    """VQ-GAN's adaptive weight lambda = ||dL_rec/dW|| / (||dL_GAN/dW|| + 1e-6), clipped to [0, max_weight].

    W is the decoder's last-layer kernel; rec_loss_fn(W) and gan_loss_fn(W) are scalar
    functions of it (cheapest: run the decoder up to its last layer once, then apply the last
    layer with W inside both functions). The result carries no gradient.
    """
    w = jax.lax.stop_gradient(last_layer_kernel)
    return adaptive_weight_from_grads(jax.grad(rec_loss_fn)(w), jax.grad(gan_loss_fn)(w), max_weight)


# ----------------------------------------------------------------- classification

def cross_entropy_per_position(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """-sum_k t_k log softmax(logits)_k at every position (shape B), t = (1 - s) onehot(label) + s / K."""
    logp = jax.nn.log_softmax(_f32(logits), axis=-1)
    nll = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return (1.0 - smoothing) * nll - smoothing * jnp.mean(logp, axis=-1)  # s/K * sum_k(-logp_k)


def cross_entropy_with_label_smoothing(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0,
                                       mask: jax.Array | None = None) -> jax.Array:
    """Mean over positions of -sum_k t_k log softmax(logits)_k, t = (1 - s) onehot(label) + s / K.

    logits_BK (B any leading dims), labels_B int. With `mask` (shape B, bool or float), the mean
    is taken over the masked positions only.
    """
    loss = cross_entropy_per_position(logits, labels, smoothing)
    if mask is None:
        return jnp.mean(loss)
    mask = _f32(mask)
    return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0)
