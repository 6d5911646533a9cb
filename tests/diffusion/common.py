"""Tiny configs shared by the diffusion tests."""

import ml_collections

from teco_jax import config_base


def model_config(**overrides) -> ml_collections.ConfigDict:
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


def task_config(data_dir: str = "", frames: int = 4, **model) -> ml_collections.ConfigDict:
    c = config_base.base()
    c.task = "diffusion"
    c.data.dir = str(data_dir)
    c.data.seq_len = frames
    c.data.batch_size = 2
    c.data.read_threads = 0
    c.data.prefetch = 1
    c.model = model_config(**model)
    c.optim.update(dict(lr=1e-3, warmup_steps=1, decay_steps=100, weight_decay=0.0))
    c.train.update(dict(num_steps=2, log_every=1, ckpt_every=2, image_every=0, eval_every=0, eval_batches=1,
                        eval_batch_size=2))
    c.lock()
    return c
