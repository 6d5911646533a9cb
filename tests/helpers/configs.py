"""Tiny configs shared by the tests: TECO, VQ-GAN (defined in teco_jax/testing.py, which
scripts/multihost_check.py uses too) and the latent-diffusion baseline (tests only)."""

import ml_collections

from teco_jax import config_base
from teco_jax.testing import (TECO_SEQ_LEN, TECO_VOCAB, teco_mesh_config, teco_tiny_config, vqgan_mesh_config,
                              vqgan_tiny_config)

__all__ = ["T", "V", "MEMORY", "teco_tiny_config", "teco_mesh_config", "vqgan_tiny_config", "vqgan_mesh_config",
           "diffusion_model_config", "diffusion_tiny_config"]

T, V = TECO_SEQ_LEN, TECO_VOCAB  # the tiny TECO's window in frames and its code vocabulary

# model.memory with the grid maze's motion (whole cells, quarter turns): two neighbours
MEMORY = dict(motion="turn=0,0,0,0,90,-90;forward=1,-1,0,0,0,0;left=0,0,1,-1,0,0", neighbours=2, turn_cost=0.5,
              radius=1.0, min_age=1, latest=True, fov_degrees=70.0, detect_blocked=True)


def diffusion_model_config(**overrides) -> ml_collections.ConfigDict:
    """config.model of a tiny latent video diffusion model (4x4 latents of 4 channels, 6 actions)."""
    m = ml_collections.ConfigDict(dict(
        vqgan_dir="random", latent_dim=4, latent_grid=(4, 4), latent_mean=(), latent_std=(), stats_frames=32,
        num_actions=6, use_actions=True, action_dropout=0.2, channels=8, channel_mult=(1, 2), num_res_blocks=1,
        attn_levels=(1,), motion_levels=(0, 1), num_heads=2, motion_heads=2, motion_layers=1, temporal_conv=True,
        alpha_init=0.5, sparse_causal=False))
    m.diffusion = ml_collections.ConfigDict(dict(kind="scaled_linear", num_timesteps=100, beta_start=0.00085,
                                                 beta_end=0.012, zero_terminal_snr=True))
    m.context = ml_collections.ConfigDict(dict(max_context=3, uncond_prob=0.1, interp_prob=0.2,
                                               interp_factors=(2,)))
    m.sampling = ml_collections.ConfigDict(dict(steps=4, guidance=1.0, eta=0.0, context_frames=2))
    m.update(overrides)
    return m


def diffusion_tiny_config(data_dir: str = "", frames: int = 4, **model) -> ml_collections.ConfigDict:
    """The diffusion task with diffusion_model_config(**model) on `frames`-frame clips, batch 2, 2 steps."""
    c = config_base.base()
    c.task = "diffusion"
    c.data.dir = str(data_dir)
    c.data.seq_len = frames
    c.data.batch_size = 2
    c.data.read_threads = 0
    c.data.prefetch = 1
    c.model = diffusion_model_config(**model)
    c.optim.update(dict(lr=1e-3, warmup_steps=1, decay_steps=100, weight_decay=0.0))
    c.train.update(dict(num_steps=2, log_every=1, ckpt_every=2, image_every=0, eval_every=0, eval_batches=1,
                        eval_batch_size=2))
    c.lock()
    return c
