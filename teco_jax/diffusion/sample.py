"""DDIM sampling, DDIM inversion, context guidance and long videos for the diffusion baseline.

- `ddim_sample` / `ddim_invert`: loops over a descending timestep grid (lax.fori_loop,
  fixed shapes) around any v-prediction function v_fn(x, t).
- `guided_v`: classifier-free "context guidance" (Video LDM): v_u + s (v_c - v_u), where
  v_u is the model's prediction with the context mask cleared (the model learns both
  through context dropout in training). s = 1 is plain conditional sampling (one pass).
- `sample_chunk`: one window of T frames, the frames where mask = 1 given, the rest
  generated (jit; the mask is an argument, so every chunk shares one compiled program).
  `invert_chunk`: DDIM inversion of a window under the model (Tune-A-Video's utility).
- `rollout_latents`: Video LDM section 3.2: generate chunk after chunk, each conditioned
  on the last `context_frames` frames of what exists so far (ground truth or generated).
- `interpolate_latents`: temporal interpolation: keyframes every `factor` frames are
  given, the frames in between are generated (mask-conditioning with the in-between
  frames masked).

Latents here are normalized (per-channel mean 0, std 1). Dimension keys: B batch,
T window (frames per chunk), L frames of the whole video, h/w latent grid, C channels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax.diffusion import schedule as sch

VFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t, t scalar int) -> v


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How to sample: `steps` DDIM steps, guidance scale, eta (0 = deterministic DDIM), the number
    of frames each chunk is conditioned on."""

    steps: int = 50
    guidance: float = 1.0
    eta: float = 0.0
    context_frames: int = 4

    @classmethod
    def from_config(cls, cfg) -> SamplerConfig:
        return cls(steps=int(cfg.steps), guidance=float(cfg.guidance), eta=float(cfg.eta),
                   context_frames=int(cfg.context_frames))


# ----------------------------------------------------------------- DDIM loops

def _with_clean(alphas_bar) -> jax.Array:
    """float32 (T + 1,): alpha_bar then 1.0, so timestep -1 indexes the clean end."""
    return jnp.concatenate([jnp.asarray(alphas_bar, jnp.float32), jnp.ones((1,), jnp.float32)])


def ddim_sample(v_fn: VFn, x: jax.Array, alphas_bar, timesteps: np.ndarray, *, start: int = 0,
                key: jax.Array | None = None, eta: float = 0.0) -> jax.Array:
    """Run DDIM from level timesteps[start] (x is x_{timesteps[start]}) down to the clean end.

    timesteps: descending int grid (schedule.ddim_timesteps). eta > 0 needs `key`."""
    ab = _with_clean(alphas_bar)
    ts = np.asarray(timesteps, np.int32)
    prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)  # -1: clean (alpha_bar = 1)
    ts_j, prev_j = jnp.asarray(ts), jnp.asarray(prev)
    stochastic = eta > 0.0
    if stochastic and key is None:
        raise ValueError("eta > 0 needs a key")

    def body(i, carry):
        x, k = carry
        t, tp = ts_j[i], prev_j[i]
        v = v_fn(x, t).astype(jnp.float32)
        noise = None
        if stochastic:
            k, sub = jax.random.split(k)
            noise = jax.random.normal(sub, x.shape, jnp.float32)
        x_new = sch.ddim_step(x.astype(jnp.float32), v, ab[t], ab[tp], eta, noise)
        return x_new.astype(x.dtype), k

    k0 = key if key is not None else jax.random.key(0)
    x, _ = jax.lax.fori_loop(start, len(ts), body, (x, k0))
    return x


def ddim_invert(v_fn: VFn, x0: jax.Array, alphas_bar, timesteps: np.ndarray, *, stop: int = 1) -> jax.Array:
    """DDIM inversion (as in Tune-A-Video): run the deterministic DDIM steps backwards from the clean
    latents up to level timesteps[stop]; `ddim_sample(..., start=stop)` maps the result back.

    Each step uses the model's v at (x_prev, t) for its unknown value at (x_t, t), so the round trip
    is exact only in the limit of small steps. The default stop=1 stops one step short of the top
    of the grid: under zero terminal SNR the top level has alpha_bar = 0, where the model sees pure
    noise and its prediction no longer depends on the latents being inverted."""
    ab = _with_clean(alphas_bar)
    ts = np.asarray(timesteps, np.int32)
    n = len(ts)
    if not 0 <= stop < n:
        raise ValueError(f"stop must lie in [0, {n}), got {stop}")
    up = ts[::-1]  # ascending
    lower = np.concatenate([[-1], up[:-1]]).astype(np.int32)
    up_j, lower_j = jnp.asarray(up), jnp.asarray(lower)

    def body(i, x):
        t, tp = up_j[i], lower_j[i]
        v = v_fn(x, t).astype(jnp.float32)
        return sch.ddim_inversion_step(x.astype(jnp.float32), v, ab[tp], ab[t]).astype(x.dtype)

    return jax.lax.fori_loop(0, n - stop, body, x0)


# ----------------------------------------------------------------- the model as v_fn

def guided_v(model, x_BThwC, t, ctx_BThwC, mask_BT, actions_BT, guidance: float) -> jax.Array:
    """The model's v at scalar timestep t, with context guidance scale `guidance` (static)."""
    b = x_BThwC.shape[0]
    if guidance == 1.0:
        return model(x_BThwC, jnp.full((b,), t, jnp.int32), ctx_BThwC, mask_BT, actions_BT)
    two = lambda a, b_: jnp.concatenate([a, b_], axis=0)
    v = model(two(x_BThwC, x_BThwC), jnp.full((2 * b,), t, jnp.int32), two(ctx_BThwC, ctx_BThwC),
              two(mask_BT, jnp.zeros_like(mask_BT)), two(actions_BT, actions_BT))
    v_c, v_u = v[:b], v[b:]
    return v_u + guidance * (v_c - v_u)


@nnx.jit(static_argnames=("steps", "guidance", "eta", "start"))
def _sample_chunk(model, alphas_bar, ctx, mask, actions, key, x_start, *, steps, guidance, eta, start):
    ts = sch.ddim_timesteps(alphas_bar.shape[0], steps)
    k_init, k_loop = jax.random.split(key)
    x = jax.random.normal(k_init, ctx.shape, jnp.float32) if x_start is None else x_start
    v_fn = lambda x_, t: guided_v(model, x_, t, ctx, mask, actions, guidance)
    x0 = ddim_sample(v_fn, x, alphas_bar, ts, start=start, key=k_loop, eta=eta)
    given = mask.astype(bool)[:, :, None, None, None]
    return jnp.where(given, ctx, x0)  # the given frames come back unchanged


def sample_chunk(model, alphas_bar, ctx_BThwC, mask_BT, actions_BT, key, sampler: SamplerConfig,
                 x_start=None, start: int = 0) -> jax.Array:
    """One window: frames with mask 1 are given (ctx), the others are sampled. -> (B, T, h, w, C).

    x_start: the latents at level timesteps[start] of the sampler's grid (e.g. from `invert_chunk`);
    None = pure noise at the top of the grid (start must then be 0)."""
    if x_start is None and start != 0:
        raise ValueError("start > 0 needs x_start")
    return _sample_chunk(model, jnp.asarray(alphas_bar, jnp.float32), jnp.asarray(ctx_BThwC, jnp.float32),
                         jnp.asarray(mask_BT, jnp.float32), jnp.asarray(actions_BT, jnp.int32), key,
                         None if x_start is None else jnp.asarray(x_start, jnp.float32),
                         steps=int(sampler.steps), guidance=float(sampler.guidance), eta=float(sampler.eta),
                         start=int(start))


@nnx.jit(static_argnames=("steps", "guidance", "stop"))
def _invert_chunk(model, alphas_bar, z, ctx, mask, actions, *, steps, guidance, stop):
    ts = sch.ddim_timesteps(alphas_bar.shape[0], steps)
    v_fn = lambda x_, t: guided_v(model, x_, t, ctx, mask, actions, guidance)
    return ddim_invert(v_fn, z, alphas_bar, ts, stop=stop)


def invert_chunk(model, alphas_bar, z_BThwC, ctx_BThwC, mask_BT, actions_BT, sampler: SamplerConfig,
                 stop: int = 1) -> jax.Array:
    """DDIM inversion of one window of latents under the model's conditioning (Tune-A-Video): the latents
    at level timesteps[stop] of the sampler's grid; `sample_chunk(..., x_start=that, start=stop)` with
    eta = 0 maps them back (approximately; see `ddim_invert`), or, with other actions or context,
    re-generates the window from the same noise."""
    return _invert_chunk(model, jnp.asarray(alphas_bar, jnp.float32), jnp.asarray(z_BThwC, jnp.float32),
                         jnp.asarray(ctx_BThwC, jnp.float32), jnp.asarray(mask_BT, jnp.float32),
                         jnp.asarray(actions_BT, jnp.int32), steps=int(sampler.steps),
                         guidance=float(sampler.guidance), stop=int(stop))


# ----------------------------------------------------------------- long videos

def _pad_actions(actions_BL: np.ndarray, length: int, null_action: int) -> np.ndarray:
    b, n = actions_BL.shape
    if n >= length:
        return actions_BL[:, :length]
    return np.concatenate([actions_BL, np.full((b, length - n), null_action, actions_BL.dtype)], axis=1)


def rollout_latents(model, alphas_bar, context_BChwC: np.ndarray, actions_BL: np.ndarray, num_frames: int,
                    key: jax.Array, window: int, sampler: SamplerConfig, null_action: int) -> np.ndarray:
    """Latents (B, L, h, w, C): the C context latents, then L - C frames generated chunk by chunk.

    Every chunk is a window of T = `window` frames whose first k = min(context_frames, frames so far)
    frames are the last k frames of the video so far; the other T - k are generated (the last chunk
    keeps only what is needed). actions[:, i] belongs to frame i (the action leading to it)."""
    ctx = np.asarray(context_BChwC, np.float32)
    b, c = ctx.shape[:2]
    k_ctx = int(sampler.context_frames)
    if not 1 <= k_ctx < window:
        raise ValueError(f"sampling.context_frames={k_ctx} must lie in [1, window={window})")
    if c < 1:
        raise ValueError("a rollout needs at least one context frame")
    actions = _pad_actions(np.asarray(actions_BL, np.int32), num_frames, null_action)
    video = [ctx[:, i] for i in range(c)]
    chunk = 0
    while len(video) < num_frames:
        have = len(video)
        k = min(k_ctx, have)
        start = have - k
        frames = np.zeros((b, window) + ctx.shape[2:], np.float32)
        frames[:, :k] = np.stack(video[start:], axis=1)
        mask = np.zeros((b, window), np.float32)
        mask[:, :k] = 1.0
        acts = _pad_actions(actions[:, start:], window, null_action)
        out = np.asarray(sample_chunk(model, alphas_bar, frames, mask, acts, jax.random.fold_in(key, chunk), sampler))
        new = min(window - k, num_frames - have)
        video.extend(out[:, k + i] for i in range(new))
        chunk += 1
    return np.stack(video[:num_frames], axis=1)


def interpolation_positions(window: int, factor: int) -> np.ndarray:
    """The positions of the given keyframes inside one interpolation window: 0, factor, 2*factor, ...
    (frames after the last of them are generated and discarded)."""
    if factor < 2:
        raise ValueError(f"interpolation factor must be >= 2, got {factor}")
    keys = np.arange(0, window, factor)
    if len(keys) < 2:
        raise ValueError(f"a window of {window} frames holds fewer than 2 keyframes {factor} frames apart")
    return keys


def interpolate_latents(model, alphas_bar, keyframes_BNhwC: np.ndarray, factor: int, key: jax.Array, window: int,
                        sampler: SamplerConfig, actions_BL: np.ndarray | None, null_action: int) -> np.ndarray:
    """Temporal interpolation: keyframes (B, N, ...) become (B, (N - 1) * factor + 1, ...) frames, the
    keyframes at positions 0, factor, 2 * factor, ... unchanged and the frames between them generated.
    Windows overlap by one keyframe. actions: (B, (N - 1) * factor + 1) for the output frames, or None."""
    keys_BN = np.asarray(keyframes_BNhwC, np.float32)
    b, n = keys_BN.shape[:2]
    pos = interpolation_positions(window, factor)
    per_window = len(pos)
    length = (n - 1) * factor + 1
    if actions_BL is None:
        actions_BL = np.full((b, length), null_action, np.int32)
    actions = _pad_actions(np.asarray(actions_BL, np.int32), length, null_action)
    out = np.zeros((b, length) + keys_BN.shape[2:], np.float32)
    out[:, ::factor] = keys_BN
    first_key, chunk = 0, 0
    while first_key < n - 1:
        used = min(per_window, n - first_key)
        frames = np.zeros((b, window) + keys_BN.shape[2:], np.float32)
        mask = np.zeros((b, window), np.float32)
        frames[:, pos[:used]] = keys_BN[:, first_key:first_key + used]
        mask[:, pos[:used]] = 1.0
        start = first_key * factor
        acts = _pad_actions(actions[:, start:], window, null_action)
        res = np.asarray(sample_chunk(model, alphas_bar, frames, mask, acts, jax.random.fold_in(key, chunk), sampler))
        end = (used - 1) * factor + 1
        out[:, start:start + end] = res[:, :end]
        first_key += used - 1
        chunk += 1
    return out
