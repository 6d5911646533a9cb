"""Schedules, zero terminal SNR, the x0/eps/v conversions and the DDIM step (pure functions)."""

import jax.numpy as jnp
import numpy as np
import pytest

from teco_jax.diffusion import schedule as sch

KINDS = [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012), ("cosine", 0.0, 0.0)]


@pytest.mark.parametrize("kind, start, end", KINDS)
@pytest.mark.parametrize("num_timesteps", [10, 1000])
def test_zero_terminal_snr_rescale(kind, start, end, num_timesteps):
    ab = sch.alphas_bar_from_betas(sch.betas(kind, num_timesteps, start, end))
    assert ab[-1] > 0  # the original schedules never reach pure noise
    new = sch.rescale_zero_terminal_snr(ab)
    assert new[-1] == 0.0  # alpha_bar_T = 0 exactly: SNR_T = 0
    assert new[0] == ab[0]  # alpha_bar_1 unchanged, exactly
    assert np.all(np.diff(new) < 0) and np.all(new >= 0)
    # the same function as Lin et al. 2023, Algorithm 1 (shift and scale sqrt(alpha_bar))
    a = np.sqrt(ab)
    lin = ((a - a[-1]) * a[0] / (a[0] - a[-1])) ** 2
    np.testing.assert_allclose(new, lin, rtol=1e-12, atol=1e-300)
    # float32 copies keep both properties (what the model and the sampler use)
    f32 = np.asarray(jnp.asarray(new, jnp.float32))
    assert f32[-1] == 0.0 and f32[0] == np.float32(ab[0])
    assert sch.snr(new)[-1] == 0.0


def test_make_alphas_bar_switch():
    on = sch.make_alphas_bar("scaled_linear", 1000, zero_terminal_snr=True)
    off = sch.make_alphas_bar("scaled_linear", 1000, zero_terminal_snr=False)
    assert on[-1] == 0.0 and off[-1] > 0.0 and on[0] == off[0]


def _draw(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=shape).astype(dtype)
    eps = rng.normal(size=shape).astype(dtype)
    ab = np.asarray([0.0, 1e-4, 0.3, 0.9991])[:, None, None].astype(dtype)[: shape[0]]
    return x0, eps, ab


def test_conversions_are_exact_inverses_float64():
    x0, eps, ab = _draw(np.float64)
    x_t = sch.q_sample(x0, eps, ab)
    v = sch.v_from_x0_eps(x0, eps, ab)
    np.testing.assert_allclose(sch.x0_from_v(x_t, v, ab), x0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sch.eps_from_v(x_t, v, ab), eps, rtol=0, atol=1e-12)
    # the eps/x0 parameterizations, where they are defined (ab > 0 for x0 from eps, ab < 1 for the rest)
    pos = ab[:, 0, 0] > 0
    np.testing.assert_allclose(sch.x0_from_eps(x_t[pos], eps[pos], ab[pos]), x0[pos], atol=1e-10)
    np.testing.assert_allclose(sch.eps_from_x0(x_t, x0, ab), eps, atol=1e-12)
    np.testing.assert_allclose(sch.v_from_x0(x_t, x0, ab), v, atol=1e-12)
    # at alpha_bar = 0, x_t is the noise and v = -x0
    np.testing.assert_array_equal(x_t[0], eps[0])
    np.testing.assert_array_equal(v[0], -x0[0])


def test_conversions_are_inverses_in_float32_jax():
    x0, eps, ab = (jnp.asarray(a) for a in _draw(np.float32))
    x_t, v = sch.q_sample(x0, eps, ab), sch.v_from_x0_eps(x0, eps, ab)
    np.testing.assert_allclose(sch.x0_from_v(x_t, v, ab), x0, atol=2e-6)
    np.testing.assert_allclose(sch.eps_from_v(x_t, v, ab), eps, atol=2e-6)


def test_trailing_timesteps():
    ts = sch.ddim_timesteps(1000, 50)
    assert ts[0] == 999 and ts[-1] == 19 and len(ts) == 50 and np.all(np.diff(ts) == -20)
    assert list(sch.ddim_timesteps(10, 10)) == list(range(9, -1, -1))
    with pytest.raises(ValueError):
        sch.ddim_timesteps(10, 11)


def test_ddim_inversion_step_inverts_the_ddim_step_for_a_fixed_v():
    rng = np.random.default_rng(1)
    x, v = rng.normal(size=(2, 16))
    for ab_t, ab_p in [(0.0, 0.01), (0.2, 0.5), (0.9, 0.9991), (0.9991, 1.0)]:
        x_p = sch.ddim_step(x, v, ab_t, ab_p)
        np.testing.assert_allclose(sch.ddim_inversion_step(x_p, v, ab_p, ab_t), x, atol=1e-10)


def test_ddim_step_with_the_exact_v_of_a_point_mass_lands_on_it():
    """Data = one point x*: the exact v at (x_t, t) is a eps - s x* with eps = (x_t - a x*) / s, and
    one deterministic DDIM step from any level (even pure noise) to the clean end returns x*."""
    rng = np.random.default_rng(2)
    target = rng.normal(size=8)
    for ab_t in [0.0, 0.3, 0.95]:
        x_t = sch.q_sample(target, rng.normal(size=8), ab_t)
        v = sch.v_from_x0(x_t, target, ab_t)
        np.testing.assert_allclose(sch.ddim_step(x_t, v, ab_t, 1.0), target, atol=1e-12)
        # a stochastic step keeps the point mass too (its noise term carries the eps part only)
        mid = sch.ddim_step(x_t, v, ab_t, 0.99, eta=1.0, noise=rng.normal(size=8))
        np.testing.assert_allclose(sch.x0_from_v(mid, sch.v_from_x0(mid, target, 0.99), 0.99), target, atol=1e-12)
