"""Optimizer and learning-rate schedule from the config (`config.optim`)."""

from __future__ import annotations

import jax
import optax


def schedule(cfg) -> optax.Schedule:
    """Linear warm-up to `lr`, then cosine decay to `end_lr` at `decay_steps`. A pure function of step."""
    warmup = int(cfg.warmup_steps)
    decay = max(int(cfg.decay_steps), warmup + 1)
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, decay, end_value=cfg.get("end_lr", 0.0))


def _decay_mask(params):
    # Weight decay on matrices and conv kernels only, not on biases, norms or scalars.
    return jax.tree.map(lambda p: getattr(p, "ndim", 0) >= 2, params)


def make(cfg) -> optax.GradientTransformation:
    """AdamW with the schedule above and optional global-norm clipping (`clip_norm` > 0)."""
    chain = []
    if cfg.get("clip_norm", 0.0) and cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    chain.append(optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.get("eps", 1e-8),
                             weight_decay=cfg.weight_decay, mask=_decay_mask))
    return optax.chain(*chain)
