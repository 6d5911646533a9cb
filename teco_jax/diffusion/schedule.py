"""Diffusion schedules and the DDIM update, as pure functions.

Notation (Ho et al. 2020; Salimans & Ho 2022): a training timestep t in [0, T) has
alpha_bar_t = prod_{s<=t} (1 - beta_s); a_t = sqrt(alpha_bar_t), s_t = sqrt(1 - alpha_bar_t).

    x_t = a_t x0 + s_t eps                      (forward process)
    v   = a_t eps - s_t x0                      (the v-prediction target)
    x0  = a_t x_t - s_t v,   eps = s_t x_t + a_t v     (inverses: a_t^2 + s_t^2 = 1)

Zero terminal SNR (Lin et al. 2023, used by Emu Video): the schedule is rescaled so that
alpha_bar_{T-1} = 0 exactly (the last training step sees pure noise, as sampling starts
from pure noise) while alpha_bar_0 is unchanged. With alpha_bar = 0 the model cannot
predict eps (x_t = eps), which is why the model predicts v.

Timesteps are 0-based indices into `alphas_bar`; the index -1 of `with_clean(alphas_bar)`
is the clean end of the chain (alpha_bar = 1), where sampling stops.

The conversions use only arithmetic and `** 0.5`, so they work on numpy float64 arrays
(exact tests) as well as on jax arrays inside jit.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------- schedules

def betas(kind: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """(T,) float64 betas. kind: "linear" (DDPM), "scaled_linear" (linear in sqrt(beta), as in
    Stable Diffusion and Video LDM), "cosine" (Nichol & Dhariwal 2021; ignores start/end)."""
    t = int(num_timesteps)
    if t < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if kind == "linear":
        return np.linspace(beta_start, beta_end, t, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, t, dtype=np.float64) ** 2
    if kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(t + 1, dtype=np.float64) / t + s) / (1 + s) * math.pi / 2) ** 2
        ab = f / f[0]
        return np.clip(1.0 - ab[1:] / ab[:-1], 0.0, 0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; choose linear, scaled_linear or cosine")


def alphas_bar_from_betas(betas_T: np.ndarray) -> np.ndarray:
    """(T,) cumulative products of (1 - beta)."""
    return np.cumprod(1.0 - np.asarray(betas_T, np.float64))


def rescale_zero_terminal_snr(alphas_bar_T: np.ndarray) -> np.ndarray:
    """Lin et al. 2023, Algorithm 1: shift sqrt(alpha_bar) so its last value is 0 and scale it so
    its first value is unchanged.

    Written as alpha_bar_0 * ((a - a_last) / (a_0 - a_last))^2 (the same function), so that both
    ends are exact in floating point: the first factor is x / x = 1, the last is 0.
    """
    ab = np.asarray(alphas_bar_T, np.float64)
    a = np.sqrt(ab)
    a0, a_last = a[0], a[-1]
    if not a0 > a_last:
        raise ValueError("alphas_bar must decrease")
    return ab[0] * ((a - a_last) / (a0 - a_last)) ** 2


def make_alphas_bar(kind: str = "scaled_linear", num_timesteps: int = 1000, beta_start: float = 0.00085,
                    beta_end: float = 0.012, zero_terminal_snr: bool = True) -> np.ndarray:
    """(T,) float64 alpha_bar of a schedule, optionally rescaled to zero terminal SNR."""
    ab = alphas_bar_from_betas(betas(kind, num_timesteps, beta_start, beta_end))
    return rescale_zero_terminal_snr(ab) if zero_terminal_snr else ab


def from_config(cfg) -> np.ndarray:
    """alpha_bar from a config section with kind, num_timesteps, beta_start, beta_end, zero_terminal_snr."""
    return make_alphas_bar(cfg.kind, int(cfg.num_timesteps), float(cfg.beta_start), float(cfg.beta_end),
                           bool(cfg.zero_terminal_snr))


def with_clean(alphas_bar_T) -> np.ndarray:
    """(T + 1,): alphas_bar followed by 1.0, so index -1 means "clean" (alpha_bar = 1)."""
    return np.concatenate([np.asarray(alphas_bar_T, np.float64), [1.0]])


def snr(alphas_bar_T) -> np.ndarray:
    ab = np.asarray(alphas_bar_T, np.float64)
    with np.errstate(divide="ignore"):
        return ab / (1.0 - ab)


def ddim_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """(num_steps,) int32 descending sampling timesteps with "trailing" spacing (Lin et al. 2023,
    Table 2): the first is T - 1, where alpha_bar = 0 under zero terminal SNR, so sampling starts
    from the distribution it was trained on; e.g. T=1000, 50 steps: 999, 979, ..., 19."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must lie in [1, {num_timesteps}], got {num_steps}")
    ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps)).astype(np.int64) - 1
    return ts.astype(np.int32)


# ----------------------------------------------------------------- conversions

def _a_s(ab):
    return ab ** 0.5, (1.0 - ab) ** 0.5


def q_sample(x0, eps, ab):
    """x_t = a x0 + s eps. `ab` broadcasts against x0 (e.g. shape (B, 1, 1, 1, 1))."""
    a, s = _a_s(ab)
    return a * x0 + s * eps


def v_from_x0_eps(x0, eps, ab):
    """The v target: a eps - s x0."""
    a, s = _a_s(ab)
    return a * eps - s * x0


def x0_from_v(x_t, v, ab):
    a, s = _a_s(ab)
    return a * x_t - s * v


def eps_from_v(x_t, v, ab):
    a, s = _a_s(ab)
    return s * x_t + a * v


def v_from_x0(x_t, x0, ab):
    """v given x_t and x0 (needs ab < 1): eps = (x_t - a x0) / s, v = a eps - s x0 = (a x_t - x0) / s."""
    a, s = _a_s(ab)
    return (a * x_t - x0) / s


def x0_from_eps(x_t, eps, ab):
    """x0 given x_t and eps (needs ab > 0)."""
    a, s = _a_s(ab)
    return (x_t - s * eps) / a


def eps_from_x0(x_t, x0, ab):
    """eps given x_t and x0 (needs ab < 1)."""
    a, s = _a_s(ab)
    return (x_t - a * x0) / s


# ----------------------------------------------------------------- DDIM

def ddim_step(x_t, v, ab_t, ab_prev, eta: float = 0.0, noise=None):
    """One DDIM update (Song et al. 2021, eq. 12) from level t to the lower level `prev`, with the
    model's v at (x_t, t): x_prev = a_prev x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise,
    sigma = eta sqrt((1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev)). eta = 0 is deterministic
    (noise unused); eta = 1 is ancestral DDPM sampling."""
    x0 = x0_from_v(x_t, v, ab_t)
    eps = eps_from_v(x_t, v, ab_t)
    a_prev = ab_prev ** 0.5
    if eta == 0.0 or noise is None:
        return a_prev * x0 + (1.0 - ab_prev) ** 0.5 * eps
    sigma = eta * ((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)) ** 0.5
    dir_coef = (1.0 - ab_prev - sigma ** 2) ** 0.5
    return a_prev * x0 + dir_coef * eps + sigma * noise


def ddim_inversion_step(x_prev, v, ab_prev, ab_t):
    """The deterministic DDIM step solved for x_t (DDIM inversion, as used by Tune-A-Video): with v
    fixed, ddim_step(x_t, v, ab_t, ab_prev) = c x_t + d v, c = a_p a_t + s_p s_t,
    d = s_p a_t - a_p s_t, so x_t = (x_prev - d v) / c. The caller passes the model's v at
    (x_prev, t), which stands in for its unknown value at (x_t, t). c > 0 whenever ab_prev > 0."""
    a_p, s_p = _a_s(ab_prev)
    a_t, s_t = _a_s(ab_t)
    c = a_p * a_t + s_p * s_t
    d = s_p * a_t - a_p * s_t
    return (x_prev - d * v) / c
