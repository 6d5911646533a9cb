"""Sampling: context guidance, chunked long videos, interpolation, checked with an oracle denoiser
whose x0 prediction is known, so every generated frame has an exact expected value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.diffusion import sample as dsample
from teco_jax.diffusion import schedule as sch

HW, C = 2, 3


class LinearOracle(nnx.Module):
    """Predicts x0 from the given frames alone: between two given frames, the linear interpolation;
    after the last given frame p, ctx[p] + (t - p) * delta (a ramp); with none given, 0. Returns the
    v that makes that x0 exact, so deterministic DDIM lands on it."""

    def __init__(self, alphas_bar, delta: float):
        self.ab = nnx.Variable(jnp.asarray(alphas_bar, jnp.float32))
        self.delta = delta

    def __call__(self, x, t, ctx, mask, actions, temporal=True):
        n = x.shape[1]
        idx = jnp.arange(n)[None, :]
        given = mask > 0
        prev = jax.lax.cummax(jnp.where(given, idx, -1), axis=1)
        nxt = jax.lax.cummin(jnp.where(given, idx, n), axis=1, reverse=True)
        take = lambda i: jnp.take_along_axis(ctx, jnp.clip(i, 0, n - 1)[:, :, None, None, None], axis=1)
        p, q = take(prev), take(nxt)
        dist = (idx - prev)[:, :, None, None, None].astype(x.dtype)
        span = jnp.maximum(nxt - prev, 1)[:, :, None, None, None].astype(x.dtype)
        interp = p + dist / span * (q - p)
        ramp = p + dist * self.delta
        has_prev = (prev >= 0)[:, :, None, None, None]
        has_next = (nxt < n)[:, :, None, None, None]
        x0 = jnp.where(has_prev, jnp.where(has_next, interp, ramp), 0.0)
        ab = self.ab[...][t][:, None, None, None, None]
        return (ab ** 0.5 * x - x0) / (1 - ab) ** 0.5


@pytest.fixture(scope="module")
def oracle():
    ab = sch.make_alphas_bar("scaled_linear", 100)
    return LinearOracle(ab, delta=0.25), ab


@pytest.mark.parametrize("context, total", [(1, 12), (3, 12), (5, 7)])
def test_chunked_rollout_conditions_every_window_on_the_last_frames(oracle, context, total):
    model, ab = oracle
    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(2, context, HW, HW, C)).astype(np.float32)
    sampler = dsample.SamplerConfig(steps=3, guidance=1.0, context_frames=2)
    out = dsample.rollout_latents(model, ab, ctx, np.zeros((2, total), np.int32), total, jax.random.key(0),
                                  window=5, sampler=sampler, null_action=6)
    assert out.shape == (2, total, HW, HW, C)
    np.testing.assert_array_equal(out[:, :context], ctx)
    # each window continues the ramp from its last given frame, so the whole video is one ramp
    expected = ctx[:, -1:] + 0.25 * np.arange(1, total - context + 1)[None, :, None, None, None]
    np.testing.assert_allclose(out[:, context:], expected, atol=1e-4)


def test_interpolation_fills_the_frames_between_keyframes(oracle):
    model, ab = oracle
    keys = np.random.default_rng(1).normal(size=(2, 5, HW, HW, C)).astype(np.float32)
    sampler = dsample.SamplerConfig(steps=3, guidance=1.0, context_frames=2)
    out = dsample.interpolate_latents(model, ab, keys, 3, jax.random.key(0), window=8, sampler=sampler,
                                      actions_BL=None, null_action=6)
    assert out.shape == (2, 13, HW, HW, C)
    np.testing.assert_array_equal(out[:, ::3], keys)
    w = np.arange(1, 3)[None, :, None, None, None] / 3
    for i in range(4):
        a, b = keys[:, i:i + 1], keys[:, i + 1:i + 2]
        np.testing.assert_allclose(out[:, 3 * i + 1:3 * i + 3], a + w * (b - a), atol=1e-4)
    assert dsample.interpolation_positions(8, 3).tolist() == [0, 3, 6]
    with pytest.raises(ValueError):
        dsample.interpolation_positions(4, 4)


def test_context_guidance_formula():
    def model(x, t, ctx, mask, actions):  # v depends on the mask: 2 with context, -1 without
        return jnp.where(jnp.sum(mask, axis=1)[:, None, None, None, None] > 0, 2.0, -1.0) * jnp.ones_like(x)

    x = jnp.zeros((3, 4, HW, HW, C))
    mask = jnp.zeros((3, 4)).at[:, 0].set(1)
    acts = jnp.zeros((3, 4), jnp.int32)
    assert float(dsample.guided_v(model, x, 5, x, mask, acts, 1.0).mean()) == 2.0
    # v_u + s (v_c - v_u) = -1 + 2.5 * 3
    np.testing.assert_allclose(dsample.guided_v(model, x, 5, x, mask, acts, 2.5), 6.5)


def test_stochastic_sampling_needs_a_key_and_is_seeded(oracle):
    model, ab = oracle
    ctx = np.ones((1, 6, HW, HW, C), np.float32)
    mask = np.zeros((1, 6), np.float32)
    mask[:, :2] = 1
    acts = np.zeros((1, 6), np.int32)
    s = dsample.SamplerConfig(steps=4, eta=1.0)
    a = dsample.sample_chunk(model, ab, ctx, mask, acts, jax.random.key(0), s)
    b = dsample.sample_chunk(model, ab, ctx, mask, acts, jax.random.key(0), s)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a[:, :2]), ctx[:, :2])  # given frames come back unchanged
    # the oracle's x0 does not depend on x_t, so even ancestral sampling lands on it
    expected = np.broadcast_to(1 + 0.25 * np.arange(1, 5)[None, :, None, None, None], a[:, 2:].shape)
    np.testing.assert_allclose(np.asarray(a[:, 2:]), expected, atol=1e-4)
    with pytest.raises(ValueError, match="key"):
        dsample.ddim_sample(lambda x, t: x, jnp.zeros(3), ab, sch.ddim_timesteps(100, 2), eta=1.0)
