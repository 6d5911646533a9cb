"""The latent video diffusion baseline: v-prediction on the VQ-GAN's continuous latents.

Latents: the frozen VQ-GAN's encoder output (the continuous 16x16 latent, before the
codebook), computed inside the loss from raw frames (stop-gradient), normalized per
channel: z = (E_vq(x) - mean) / std. The statistics are computed once, from the first
`model.stats_frames` frames of training clips, when the task is built for a config whose
`model.latent_mean` is empty; they are written into the config (model.latent_mean,
model.latent_std), so config.json carries them and sampling needs no data.

Training step (per video): a timestep t ~ U{0..T-1} of a zero-terminal-SNR schedule,
x_t = a_t z + s_t eps, a context mask m (the first k ~ U{1..max_context} frames given;
with probability `interp_prob` every f-th frame instead, for the interpolation mode;
with probability `uncond_prob` none: context dropout, which lets sampling apply context
guidance), actions (dropped to the null action with probability `action_dropout`), and
L = mean over the frames that are not given of ||v_theta - (a_t eps - s_t z)||^2
(mean over h, w, C).

Dimension keys: B batch, T frames, H/W pixels, h/w latent grid, C latent channels.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from teco_jax import checkpoint, config_base, parallel
from teco_jax import logging as tlog
from teco_jax.diffusion import sample as dsample
from teco_jax.diffusion import schedule as sch
from teco_jax.models.video_unet import (
    AlphaMix,
    MotionModule,
    TemporalConv,
    VideoDenoiser,
)
from teco_jax.errors import UserError
from teco_jax.loading import load_vqgan
from teco_jax.models.vqgan import VQGAN
from teco_jax.nn.util import count_params
from teco_jax.tasks import base
from teco_jax.tasks.teco import action_dropout


def to_float(frames_uint8: jax.Array) -> jax.Array:
    return frames_uint8.astype(jnp.float32) / 127.5 - 1.0


def random_vqgan_config(latent_dim: int, resolution: int) -> ml_collections.ConfigDict:
    """A small untrained VQ-GAN (4x down-sampling) for tests and benchmarks: model.vqgan_dir='random'."""
    c = config_base.base()
    c.task = "vqgan"
    c.model.update(dict(resolution=int(resolution), channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
                        num_mid_blocks=1, latent_dim=int(latent_dim), codebook_size=64, code_dim=4, beta=0.25))
    return c


def frozen_vqgan(vqgan_dir: str, latent_dim: int, latent_grid) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """The baseline's frozen VQ-GAN (its `vqgan` module) and its config, loaded with
    `teco_jax.loading.load_vqgan` and checked against model.latent_dim; 'random' builds an
    untrained one."""
    if vqgan_dir == "random":
        cfg = random_vqgan_config(latent_dim, 4 * int(latent_grid[0]))
        return VQGAN(cfg.model, rngs=nnx.Rngs(0)), cfg
    if not vqgan_dir:
        raise ValueError("the diffusion baseline needs its VQ-GAN: set config.model.vqgan_dir")
    vqgan, cfg = load_vqgan(vqgan_dir)
    if int(cfg.model.latent_dim) != int(latent_dim):
        raise ValueError(f"the VQ-GAN at {vqgan_dir} has latent_dim={cfg.model.latent_dim}, but "
                         f"config.model.latent_dim={latent_dim}")
    return vqgan, cfg


@nnx.jit
def encode_latents(vqgan, frames_NHW3: jax.Array) -> jax.Array:
    """uint8 frames (N, H, W, 3) -> the VQ-GAN's continuous latents (N, h, w, C), unnormalized."""
    return vqgan.encoder(to_float(frames_NHW3))


def latent_stats(vqgan, batches: Iterator[dict[str, np.ndarray]], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float64 accumulation) of the latents of the first `num_frames`
    frames of `batches` (pipeline batches with "video" (B, T, H, W, 3))."""
    total, sq, frames, n = 0.0, 0.0, 0, 0
    for batch in batches:
        video = np.asarray(batch["video"])
        z = np.asarray(encode_latents(vqgan, jnp.asarray(video.reshape((-1,) + video.shape[2:]))), np.float64)
        z = z.reshape(-1, z.shape[-1])
        total, sq, n = total + z.sum(0), sq + np.square(z).sum(0), n + len(z)
        frames += video.shape[0] * video.shape[1]
        if frames >= num_frames:
            break
    if n == 0:
        raise ValueError("no frames to compute the latent statistics from")
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - np.square(mean), 1e-12))
    return mean, std


def config_latent_stats(m: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 (C,) from config.model.latent_mean/latent_std."""
    if len(m.latent_mean) == 0:
        raise ValueError("config.model.latent_mean/latent_std are empty: they are computed from the training "
                         "data when config.data.dir and config.model.vqgan_dir are set")
    mean, std = np.asarray(m.latent_mean, np.float32), np.asarray(m.latent_std, np.float32)
    if mean.shape != (m.latent_dim,) or std.shape != (m.latent_dim,):
        raise ValueError(f"latent_mean/latent_std must have {m.latent_dim} entries (model.latent_dim)")
    return mean, std


def context_masks(key: jax.Array, batch: int, frames: int, *, max_context: int, uncond_prob: float,
                  interp_prob: float = 0.0, interp_factors: tuple[int, ...] = ()) -> jax.Array:
    """(B, T) float32 masks of the given frames, one per video: the first k ~ U{1..max_context}
    frames (prediction); with probability interp_prob, frames 0, f, 2f, ... for f drawn from
    interp_factors (interpolation); with probability uncond_prob, none (context dropout)."""
    k_n, k_f, k_i, k_u = jax.random.split(key, 4)
    pos = jnp.arange(frames)[None, :]
    n_ctx = jax.random.randint(k_n, (batch,), 1, max_context + 1)
    m = pos < n_ctx[:, None]
    if interp_prob > 0 and interp_factors:
        factors = jnp.asarray(interp_factors, jnp.int32)
        f = factors[jax.random.randint(k_f, (batch,), 0, len(interp_factors))]
        interp = (pos % f[:, None]) == 0
        m = jnp.where(jax.random.bernoulli(k_i, interp_prob, (batch,))[:, None], interp, m)
    if uncond_prob > 0:
        m = jnp.where(jax.random.bernoulli(k_u, uncond_prob, (batch,))[:, None], False, m)
    return m.astype(jnp.float32)


def masked_mse(pred_BThwC: jax.Array, target_BThwC: jax.Array, weight_BT: jax.Array) -> jax.Array:
    """Mean squared error per frame (over h, w, C), averaged over frames with weight 1."""
    per_frame = jnp.mean(jnp.square(pred_BThwC.astype(jnp.float32) - target_BThwC), axis=(2, 3, 4))
    return jnp.sum(per_frame * weight_BT) / jnp.maximum(jnp.sum(weight_BT), 1.0)


@base.register
class DiffusionTask(base.Task):
    name = "diffusion"
    batch_keys = ("video", "actions")

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        m = config.model
        self.alphas_bar = sch.from_config(m.diffusion)  # (T,) float64
        if len(m.latent_mean) == 0 and m.vqgan_dir and config.data.dir:
            self.preflight(base.data_meta(config))  # one-line errors before any frame is encoded
            mean, std = self.compute_latent_stats()
            m.latent_mean = tuple(float(x) for x in mean)
            m.latent_std = tuple(float(x) for x in std)

    # ------------------------------------------------------------ the frozen VQ-GAN
    @functools.cached_property
    def _vqgan(self) -> tuple[nnx.Module, ml_collections.ConfigDict]:
        m = self.config.model
        return frozen_vqgan(m.vqgan_dir, m.latent_dim, m.latent_grid)

    def compute_latent_stats(self) -> tuple[np.ndarray, np.ndarray]:
        from teco_jax.data import pipeline  # deferred: tensorflow_datasets and grain take seconds to import

        d = self.config.data
        ds, _ = pipeline.make_dataset(d.dir, "train", seq_len=d.seq_len, batch_size=max(1, min(d.batch_size, 8)),
                                      seed=self.config.seed, read_threads=0, prefetch=0)
        return latent_stats(self._vqgan[0], iter(ds), int(self.config.model.stats_frames))

    def latent_stats(self) -> tuple[np.ndarray, np.ndarray]:
        return config_latent_stats(self.config.model)

    def constants(self) -> Any:
        mean, std = self.latent_stats()
        return {"vqgan": nnx.state(self._vqgan[0]), "mean": mean, "std": std}

    def vqgan_from(self, constants) -> nnx.Module:
        return nnx.merge(nnx.graphdef(self._vqgan[0]), constants["vqgan"])

    def latents(self, constants, video_BTHW3: jax.Array) -> jax.Array:
        """uint8 frames -> normalized continuous latents (B, T, h, w, C), no gradient."""
        vqgan = self.vqgan_from(constants)
        b, t = video_BTHW3.shape[:2]
        z = vqgan.encoder(to_float(video_BTHW3.reshape((b * t,) + video_BTHW3.shape[2:]))).astype(jnp.float32)
        z = (z - constants["mean"]) / constants["std"]
        return jax.lax.stop_gradient(z.reshape((b, t) + z.shape[1:]))

    def preflight(self, data_meta) -> None:
        """The raw-frame dataset and the VQ-GAN against config.model: frames, frame size, latents, actions."""
        if data_meta is None:
            return
        from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

        m, where = self.config.model, self.config.data.dir
        base.check_frame_feature(self.config, data_meta, "video", "the diffusion baseline",
                                 "set config.data.dir to a raw-frame dataset (python -m teco_jax.data.build); its "
                                 "VQ-GAN encodes the frames inside the loss")
        resolution, grid, latent_dim = self._preflight_vqgan()
        frames = tuple(data_meta.frame_shape[:2])
        if frames != (resolution, resolution):
            raise UserError(f"config.data.dir={where} has {frames[0]}x{frames[1]} frames, but the VQ-GAN "
                            f"config.model.vqgan_dir={m.vqgan_dir} takes {resolution}x{resolution} frames")
        if tuple(int(x) for x in m.latent_grid) != grid:
            raise UserError(f"config.model.latent_grid={tuple(m.latent_grid)}, but the VQ-GAN {m.vqgan_dir} makes "
                            f"{grid} latents of {resolution}x{resolution} frames: set config.model.latent_grid={grid}")
        if int(m.latent_dim) != latent_dim:
            raise UserError(f"config.model.latent_dim={m.latent_dim}, but the VQ-GAN {m.vqgan_dir} has "
                            f"latent_dim={latent_dim}: set config.model.latent_dim={latent_dim}")
        if m.use_actions:
            tfds_meta.check_actions(data_meta, int(m.num_actions), "config.model.num_actions", data_dir=where)

    def _preflight_vqgan(self) -> tuple[int, tuple[int, int], int]:
        """(frame side, latent grid, latent_dim) of config.model.vqgan_dir, read from its config.json alone."""
        m = self.config.model
        if m.vqgan_dir == "random":  # random_vqgan_config: 4x down-sampling, the config's latents
            grid = tuple(int(x) for x in m.latent_grid)
            return 4 * grid[0], grid, int(m.latent_dim)
        if not m.vqgan_dir:
            raise UserError("config.model.vqgan_dir is empty: the diffusion baseline needs the VQ-GAN workdir "
                            "whose latents it models")
        path = Path(m.vqgan_dir)
        if not (path / "config.json").is_file():
            problem = "does not exist" if not path.exists() else "has no config.json (not a training workdir)"
            raise UserError(f"config.model.vqgan_dir={m.vqgan_dir} {problem}")
        vq = checkpoint.load_config(path)
        if vq.get("task") != "vqgan":
            raise UserError(f"config.model.vqgan_dir={m.vqgan_dir} holds a {vq.get('task')!r} run, not a VQ-GAN")
        side = int(vq.model.resolution)
        latent = side // 2 ** (len(vq.model.channel_mult) - 1)
        return side, (latent, latent), int(vq.model.latent_dim)

    # ------------------------------------------------------------ model and loss
    def build_model(self, rngs: nnx.Rngs) -> VideoDenoiser:
        return VideoDenoiser(self.config.model, rngs=rngs, dtype=config_base.compute_dtype(self.config))

    def condition_actions(self, key, actions_BT: jax.Array, null_action: int, train: bool) -> jax.Array:
        m = self.config.model
        if not m.use_actions:
            return jnp.full_like(actions_BT, null_action)
        if train and m.action_dropout > 0:
            return action_dropout(key, actions_BT, m.action_dropout, null_action)
        return actions_BT

    def forward(self, model: VideoDenoiser, z0, actions, key, *, t=None, mask=None, train: bool = True) -> dict:
        """The denoiser on noised latents: dict(v (prediction), target, mask, t, x_t, ab)."""
        ctx = self.config.model.context
        b, frames = z0.shape[:2]
        k_t, k_eps, k_m, k_a = jax.random.split(key, 4)
        if t is None:
            t = jax.random.randint(k_t, (b,), 0, len(self.alphas_bar))
        if mask is None:
            mask = context_masks(k_m, b, frames, max_context=min(int(ctx.max_context), frames - 1),
                                 uncond_prob=float(ctx.uncond_prob), interp_prob=float(ctx.interp_prob),
                                 interp_factors=tuple(int(f) for f in ctx.interp_factors))
        eps = jax.random.normal(k_eps, z0.shape, jnp.float32)
        ab = jnp.asarray(self.alphas_bar, jnp.float32)[t][:, None, None, None, None]
        x_t = sch.q_sample(z0, eps, ab)
        acts = self.condition_actions(k_a, actions, model.null_action, train)
        v = model(x_t, t, z0, mask, acts)
        return dict(v=v, target=sch.v_from_x0_eps(z0, eps, ab), mask=mask, t=t, x_t=x_t, ab=ab)

    def loss(self, model, batch, key, step, constants):
        z0 = self.latents(constants, batch["video"])
        out = self.forward(model, z0, batch["actions"], key)
        mask = out["mask"]
        loss = masked_mse(out["v"], out["target"], 1.0 - mask)
        metrics = {"v_mse": loss, "context_frames": jnp.mean(jnp.sum(mask, axis=1)),
                   "uncond_frac": jnp.mean((jnp.sum(mask, axis=1) == 0).astype(jnp.float32)),
                   "alpha_mean": jnp.mean(jnp.stack([a.alpha for a in model.alpha_mixers()]))
                   if model.alpha_mixers() else jnp.zeros(())}
        return loss, metrics

    # ------------------------------------------------------------ evaluation and pictures
    def eval_levels(self) -> tuple[int, ...]:
        n = len(self.alphas_bar)
        return tuple(int(round(f * (n - 1))) for f in (0.1, 0.5, 0.9))

    def evaluate(self, model, batches: Iterator[dict[str, np.ndarray]], constants) -> dict[str, float]:
        """Test-set v-MSE at three fixed noise levels (10%, 50%, 90% of the schedule) and the x0 MSE
        at 50%, on the frames after `sampling.context_frames` given ones (fixed noise); copy_last_mse:
        the x0 MSE of copying the last given frame, for reference."""
        rows = []
        for batch in batches:
            out = _eval_batch(self, model, jnp.asarray(batch["video"]), jnp.asarray(batch["actions"]), constants)
            rows.append({k: float(v) for k, v in out.items()})
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}

    def sampler(self) -> dsample.SamplerConfig:
        return dsample.SamplerConfig.from_config(self.config.model.sampling)

    def visualize(self, model, batch, constants) -> np.ndarray:
        """Rows: real frames, then one sampled window (its first context_frames frames given), for 2 videos."""
        video = parallel.to_host(batch["video"])[:2]
        actions = parallel.to_host(batch["actions"])[:2]
        z0 = parallel.to_host(_latents(self, video, constants))
        s = self.sampler()
        k = min(s.context_frames, video.shape[1] - 1)
        mask = np.zeros(z0.shape[:2], np.float32)
        mask[:, :k] = 1
        acts = parallel.to_host(self.condition_actions(None, jnp.asarray(actions), model.null_action, False))
        fake = dsample.sample_chunk(model, self.alphas_bar, np.where(mask[..., None, None, None] > 0, z0, 0), mask,
                                    acts, jax.random.key(0), s)
        frames = parallel.to_host(_decode(self, fake, constants))
        rows = []
        for i in range(len(video)):
            rows += [video[i], frames[i]]
        return tlog.image_grid(rows)

    def describe(self, model) -> dict[str, int]:
        def total(kind):
            return sum(count_params(mod) for _, mod in nnx.iter_graph(model) if isinstance(mod, kind))

        counts = {"embeddings (timestep, actions)": count_params(model.time_fc1) + count_params(model.time_fc2)
                  + count_params(model.action_embed),
                  "temporal convolutions": total(TemporalConv),
                  "motion modules (temporal attention)": total(MotionModule),
                  "alpha mixing factors": total(AlphaMix)}
        counts["spatial layers (ResNet blocks, attention, in/out)"] = count_params(model) - sum(counts.values())
        counts["total (excluding the VQ-GAN)"] = count_params(model)
        return counts


@nnx.jit(static_argnums=(0,))
def _latents(task: DiffusionTask, video, constants):
    return task.latents(constants, video)


@nnx.jit(static_argnums=(0,))
def _decode(task: DiffusionTask, z_BThwC, constants):
    """Normalized latents -> uint8 frames: denormalize, quantize with the VQ-GAN's codebook, decode."""
    vqgan = task.vqgan_from(constants)
    z = z_BThwC * constants["std"] + constants["mean"]
    x = vqgan.decode(vqgan.codebook(z)["z_q"]).astype(jnp.float32)
    return jnp.round(jnp.clip((x + 1.0) * 127.5, 0.0, 255.0)).astype(jnp.uint8)


@nnx.jit(static_argnums=(0,))
def _eval_batch(task: DiffusionTask, model, video, actions, constants):
    z0 = task.latents(constants, video)
    b, frames = z0.shape[:2]
    k = min(int(task.config.model.sampling.context_frames), frames - 1)
    mask = jnp.broadcast_to((jnp.arange(frames) < k).astype(jnp.float32), (b, frames))
    out = {}
    for level in task.eval_levels():
        t = jnp.full((b,), level, jnp.int32)
        f = task.forward(model, z0, actions, jax.random.key(level), t=t, mask=mask, train=False)
        out[f"v_mse_t{level}"] = masked_mse(f["v"], f["target"], 1.0 - mask)
        if level == task.eval_levels()[1]:
            out["x0_mse_mid"] = masked_mse(sch.x0_from_v(f["x_t"], f["v"], f["ab"]), z0, 1.0 - mask)
    out["v_mse"] = jnp.mean(jnp.stack([out[f"v_mse_t{lv}"] for lv in task.eval_levels()]))
    # reference for x0_mse_mid: every generated frame predicted as a copy of the last given frame
    out["copy_last_mse"] = masked_mse(jnp.broadcast_to(z0[:, k - 1:k], z0.shape), z0, 1.0 - mask)
    return out
