"""DDIM inversion followed by deterministic DDIM sampling gives the latents back.

DDIM inversion is exact only in the limit of small steps (each inverted step uses the
model's prediction at the point it leaves, not the one it arrives at), so the round-trip
error shrinks with the number of steps. Stated tolerances:
- closed form (Gaussian data, std 0.7, exact v): RMSE < 1e-2 with 50 steps and < 5e-4 with
  1000 (measured: 4e-3 and 2e-4);
- a tiny denoiser trained here for 120 Adam steps (~20 s on a CPU) on structured latents
  (std ~0.64): RMSE < 0.03 and max error < 0.15 with 50 steps (measured: ~0.01 and ~0.04),
  and the error with 50 steps is less than 0.6 times that with 20 (measured: 0.4).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from teco_jax.diffusion import sample as dsample
from teco_jax.diffusion import schedule as sch
from teco_jax.models.video_unet import VideoDenoiser
from tests.helpers.configs import diffusion_model_config as model_config

B, T, HW, C = 4, 4, 4, 4


def rmse(a, b) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(a - b))))


def test_round_trip_with_the_exact_v_of_gaussian_data():
    mu, sd = 0.5, 0.7
    ab = sch.make_alphas_bar("scaled_linear", 1000)

    def v_fn(x, t):  # the exact v for data ~ N(mu, sd^2) per element
        a2 = jnp.asarray(ab, jnp.float32)[t]
        a, s = jnp.sqrt(a2), jnp.sqrt(1 - a2)
        x0 = mu + a * sd ** 2 / (a2 * sd ** 2 + s ** 2) * (x - a * mu)
        return (a * x - x0) / s

    x0 = mu + sd * jax.random.normal(jax.random.key(0), (64, 8))
    for steps, tol in [(50, 1e-2), (1000, 5e-4)]:
        ts = sch.ddim_timesteps(len(ab), steps)
        x_top = dsample.ddim_invert(v_fn, x0, ab, ts, stop=1)
        # the inverted latents look like the noise level they stand for (nearly pure noise)
        assert abs(float(jnp.std(x_top)) - 1.0) < 0.1
        assert rmse(dsample.ddim_sample(v_fn, x_top, ab, ts, start=1), x0) < tol
        # a partial inversion (half way up, as for editing) round-trips as well
        half = dsample.ddim_invert(v_fn, x0, ab, ts, stop=steps // 2)
        assert rmse(dsample.ddim_sample(v_fn, half, ab, ts, start=steps // 2), x0) < tol


@pytest.fixture(scope="module")
def trained():
    """A tiny VideoDenoiser trained for 120 steps on 4 structured latent videos."""
    cfg = model_config()
    ab = sch.from_config(cfg.diffusion)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(B, 1, 1, 1, C))
    phase = rng.uniform(0, 6, size=(B, 1, 1, 1, 1))
    i = np.arange(HW)[None, None, :, None, None]
    t_ = np.arange(T)[None, :, None, None, None]
    data = jnp.asarray(base * np.sin(0.8 * i + 0.5 * t_ + phase) + 0.3 * np.cos(np.swapaxes(i, 2, 3) + phase),
                       jnp.float32)
    model = VideoDenoiser(cfg, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    mask, acts = jnp.zeros((B, T)), jnp.full((B, T), cfg.num_actions, jnp.int32)
    ab32 = jnp.asarray(ab, jnp.float32)

    @nnx.jit
    def step(model, opt, key):
        def loss_fn(model):
            k1, k2 = jax.random.split(key)
            t = jax.random.randint(k1, (B,), 0, len(ab))
            eps = jax.random.normal(k2, data.shape)
            a = ab32[t][:, None, None, None, None]
            v = model(sch.q_sample(data, eps, a), t, data, mask, acts)
            return jnp.mean(jnp.square(v - sch.v_from_x0_eps(data, eps, a)))

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, jax.random.key(i))) for i in range(120)]
    return model, ab, data, mask, acts, losses


def _round_trip(model, ab, data, mask, acts, steps, stop):
    """The public utilities: invert_chunk, then sample_chunk from the inverted latents (eta = 0)."""
    sampler = dsample.SamplerConfig(steps=steps, guidance=1.0, eta=0.0)
    x_top = dsample.invert_chunk(model, ab, data, data, mask, acts, sampler, stop=stop)
    return x_top, dsample.sample_chunk(model, ab, data, mask, acts, jax.random.key(0), sampler, x_start=x_top,
                                       start=stop)


@pytest.mark.slow
def test_round_trip_on_a_tiny_trained_model(trained):
    model, ab, data, mask, acts, losses = trained
    assert np.mean(losses[-20:]) < np.mean(losses[:20])  # it did learn something
    run = functools.partial(_round_trip, model, ab, data, mask, acts)
    x_top, rec = run(50, 1)
    assert float(jnp.abs(x_top - data).mean()) > 0.3  # the inverted latents are far from the data...
    assert rmse(rec, data) < 0.03 and float(jnp.abs(rec - data).max()) < 0.15  # ...and sampling brings them back
    # first order in the step size
    assert rmse(rec, data) < 0.6 * rmse(run(20, 1)[1], data)
