"""The diffusion baseline behind the same small API as TECO's `teco_jax.world_model.WorldModel`.

    wm = DiffusionWorldModel.load("runs/diffusion")        # config.json + checkpoint + VQ-GAN
    video = wm.rollout(context, actions, 300, key=0)       # uint8 (B, 300, H, W, 3)
    video = wm.rollout(context, None, 300, key=0)          # unconditional (the null action)
    z = wm.encode(frames); frames = wm.decode(z)           # uint8 <-> normalized continuous latents
    fast = wm.interpolate(frames[:, ::4], 4)               # temporal interpolation (x4 frame rate)

Frames -> latents: the VQ-GAN's encoder (the continuous latent, before quantization),
normalized with the per-channel statistics saved in the config. Latents -> frames: the
generated latents are denormalized, quantized with the VQ-GAN's codebook (nearest code),
and decoded, the same path as a VQ-GAN reconstruction: the decoder was trained only on
quantized latents, so decoding the raw continuous ones would feed it inputs it never saw.

Rollouts (`teco_jax.diffusion.sample.rollout_latents`) are generated window by window
(`window` = data.seq_len frames), each window conditioned on the last
`model.sampling.context_frames` frames before it. A context longer than that is
accepted, but only its last frames condition the first window.

Dimension keys: B batch, C context frames, L total frames (context included), N
keyframes, H/W pixels, h/w latent grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from teco_jax.diffusion import sample as dsample
from teco_jax.diffusion import schedule as sch
from teco_jax.loading import load_model
from teco_jax.tasks.diffusion import config_latent_stats, frozen_vqgan
from teco_jax.world_model import VideoModelFacts, _check_workdir, _chunked


@nnx.jit
def _encode_chunk(vqgan, frames_NHW3, mean, std):
    z = vqgan.encoder(frames_NHW3.astype(jnp.float32) / 127.5 - 1.0).astype(jnp.float32)
    return (z - mean) / std


@nnx.jit
def _decode_chunk(vqgan, z_NhwC, mean, std):
    z = z_NhwC * std + mean
    x = vqgan.decode(vqgan.codebook(z)["z_q"]).astype(jnp.float32)
    return jnp.round(jnp.clip((x + 1.0) * 127.5, 0.0, 255.0)).astype(jnp.uint8)


@dataclasses.dataclass
class DiffusionWorldModel(VideoModelFacts):
    """Video denoiser + VQ-GAN. Build it with `DiffusionWorldModel.load(checkpoint_dir)`."""

    model: nnx.Module
    vqgan: nnx.Module
    config: ml_collections.ConfigDict  # the diffusion run's config
    vq_config: ml_collections.ConfigDict
    mean: np.ndarray  # (C,) latent statistics
    std: np.ndarray
    alphas_bar: np.ndarray
    chunk: int = 64  # frames per VQ-GAN encode/decode call

    @classmethod
    def load(cls, checkpoint_dir: Path | str, step: int | None = None,
             vqgan_dir: Path | str | None = None) -> DiffusionWorldModel:
        """The denoiser from its training workdir (config.json + checkpoint `step`, default the latest)
        and the VQ-GAN it was trained with (config.model.vqgan_dir, or `vqgan_dir`)."""
        workdir = Path(checkpoint_dir)
        config = _check_workdir(workdir, step, "checkpoint")
        if config.get("task") != "diffusion":
            raise ValueError(f"{workdir} holds a {config.get('task')!r} run, not the diffusion baseline")
        model, config = load_model(workdir, step, config=config)
        m = config.model
        vqgan, vq_config = frozen_vqgan(str(vqgan_dir) if vqgan_dir is not None else m.vqgan_dir, m.latent_dim,
                                       m.latent_grid)
        mean, std = config_latent_stats(m)
        return cls(model=model, vqgan=vqgan, config=config, vq_config=vq_config, mean=mean, std=std,
                   alphas_bar=sch.from_config(m.diffusion))

    # ------------------------------------------------------------- facts
    @property
    def sampler(self) -> dsample.SamplerConfig:
        """The sampler of the config (model.sampling: steps, guidance, eta, context_frames)."""
        return dsample.SamplerConfig.from_config(self.config.model.sampling)

    # ------------------------------------------------------------- frames <-> latents
    def encode(self, frames_BTHW3: np.ndarray) -> np.ndarray:
        """uint8 frames (B, T, H, W, 3) -> normalized continuous latents float32 (B, T, h, w, C)."""
        frames = self._check_frames(frames_BTHW3, "frames")
        b, t = frames.shape[:2]
        fn = lambda vq, x: _encode_chunk(vq, x, self.mean, self.std)
        z = _chunked(fn, self.vqgan, frames.reshape((b * t,) + frames.shape[2:]), self.chunk)
        return z.reshape((b, t) + z.shape[1:])

    def decode(self, latents_BThwC: np.ndarray) -> np.ndarray:
        """Normalized latents (B, T, h, w, C) -> uint8 frames (quantized with the codebook, then decoded)."""
        z = np.asarray(latents_BThwC, np.float32)
        b, t = z.shape[:2]
        if b * t == 0:
            return np.zeros((b, t) + self.frame_shape, np.uint8)
        fn = lambda vq, x: _decode_chunk(vq, x, self.mean, self.std)
        frames = _chunked(fn, self.vqgan, z.reshape((b * t,) + z.shape[2:]), self.chunk)
        return frames.reshape((b, t) + frames.shape[1:])

    # ------------------------------------------------------------- rollouts
    def _actions(self, actions_BL, batch: int, num_frames: int) -> np.ndarray:
        null = self.num_actions
        if actions_BL is None:
            return np.full((batch, num_frames), null, np.int32)
        if not self.config.model.use_actions:
            raise ValueError("this model was trained without actions (model.use_actions=False): pass actions=None")
        actions = np.asarray(actions_BL)
        if actions.shape != (batch, num_frames):
            raise ValueError(f"actions must have shape (B, L) = ({batch}, {num_frames}), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions}) (use actions=None for unconditional "
                             "rollouts)")
        return actions.astype(np.int32)

    def _key(self, key) -> jax.Array:
        return jax.random.key(key) if isinstance(key, (int, np.integer)) else key

    def rollout_latents(self, context_BChwC: np.ndarray, actions_BL: np.ndarray | None, num_frames: int,
                        key: jax.Array | int = 0, sampler: dsample.SamplerConfig | None = None) -> np.ndarray:
        """Latents (B, L, h, w, C): the C context latents followed by L - C generated ones."""
        ctx = np.asarray(context_BChwC, np.float32)
        b, c = ctx.shape[:2]
        if c < 1:
            raise ValueError("a rollout needs at least one context frame")
        if num_frames < c:
            raise ValueError(f"num_frames={num_frames} is fewer than the {c} context frames (it counts them)")
        actions = self._actions(actions_BL, b, num_frames)
        return dsample.rollout_latents(self.model, self.alphas_bar, ctx, actions, int(num_frames), self._key(key),
                                       self.window, sampler or self.sampler, self.num_actions)

    def rollout(self, context_BCHW3: np.ndarray, actions_BL: np.ndarray | None, num_frames: int,
                key: jax.Array | int = 0, sampler: dsample.SamplerConfig | None = None) -> np.ndarray:
        """A video of num_frames (L) frames: the C context frames, unchanged, then L - C generated.

        context: uint8 (B, C, H, W, 3). actions: int (B, L) in [0, num_actions), actions[:, t]
        leading from frame t-1 to frame t, or None for an unconditional rollout (the null
        action). key: a PRNG key or an int seed. Returns uint8 (B, L, H, W, 3)."""
        context = self._check_frames(context_BCHW3, "context frames")
        c = context.shape[1]
        keep = min(c, (sampler or self.sampler).context_frames)  # only these condition the first window
        z = self.rollout_latents(self.encode(context[:, c - keep:]),
                                 None if actions_BL is None else np.asarray(actions_BL)[:, c - keep:],
                                 int(num_frames) - (c - keep), key, sampler)
        return np.concatenate([context, self.decode(z[:, keep:])], axis=1)

    def interpolate(self, keyframes_BNHW3: np.ndarray, factor: int, actions_BL: np.ndarray | None = None,
                    key: jax.Array | int = 0, sampler: dsample.SamplerConfig | None = None) -> np.ndarray:
        """Temporal interpolation: N keyframes -> (N - 1) * factor + 1 frames, the keyframes unchanged at
        positions 0, factor, 2 * factor, ... (the model should be trained with interpolation masks,
        model.context.interp_prob > 0, with this factor among model.context.interp_factors)."""
        frames = self._check_frames(keyframes_BNHW3, "keyframes")
        b, n = frames.shape[:2]
        length = (n - 1) * factor + 1
        actions = None if actions_BL is None else self._actions(actions_BL, b, length)
        z = dsample.interpolate_latents(self.model, self.alphas_bar, self.encode(frames), int(factor), self._key(key),
                                        self.window, sampler or self.sampler, actions, self.num_actions)
        out = self.decode(z)
        out[:, ::factor] = frames
        return out
