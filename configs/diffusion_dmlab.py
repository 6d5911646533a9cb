"""Latent video diffusion baseline on DMLab-style 64x64 video (the VQ-GAN's continuous 16x16 latents).

    python -m teco_jax.train --config configs/diffusion_dmlab.py:tiny --workdir runs/diffusion \
        --config.data.dir=data/maze_tfds --config.model.vqgan_dir=runs/vqgan_tiny

Presets: "" (full size, for accelerators), "tiny" (trains on a 2-core CPU in minutes).
Trains on raw frames (data.dir is a raw-frame TFDS dataset); the frozen VQ-GAN named by
model.vqgan_dir encodes them inside the loss. model.latent_mean/latent_std are filled
from the training data when the run starts (and saved with the config).
"""

import ml_collections

from teco_jax import config_base


def diffusion_config():
    c = config_base.base()
    c.task = "diffusion"
    c.data.seq_len = 16  # frames per window (the model's window; long videos are generated window by window)
    c.data.batch_size = 32

    m = c.model
    m.vqgan_dir = ""
    m.latent_dim = 256  # the VQ-GAN's latent_dim
    m.latent_grid = (16, 16)
    m.latent_mean = ()  # per-channel statistics of the latents, filled from the training data
    m.latent_std = ()
    m.stats_frames = 1024
    m.num_actions = 6
    m.use_actions = True
    m.action_dropout = 0.2  # per video: the null action, so one model also rolls out unconditionally

    # the denoiser (teco_jax/models/video_unet.py)
    m.channels = 192  # 169 M parameters, as many as TECO's DMLab model (~172 M)
    m.channel_mult = (1, 2, 3)  # 16x16, 8x8, 4x4
    m.num_res_blocks = 2
    m.attn_levels = (1, 2)  # spatial self-attention at 8x8 and 4x4
    m.motion_levels = (0, 1, 2)  # temporal attention everywhere
    m.num_heads = 8
    m.motion_heads = 8
    m.motion_layers = 1
    m.temporal_conv = True
    m.alpha_init = 0.5
    m.sparse_causal = False  # Tune-A-Video's sparse-causal attention in place of spatial attention

    m.diffusion = ml_collections.ConfigDict(dict(kind="scaled_linear", num_timesteps=1000, beta_start=0.00085,
                                                 beta_end=0.012, zero_terminal_snr=True))
    # training context masks: first k ~ U{1..max_context} frames; interpolation masks; context dropout
    m.context = ml_collections.ConfigDict(dict(max_context=15, uncond_prob=0.1, interp_prob=0.1,
                                               interp_factors=(2, 4)))
    m.sampling = ml_collections.ConfigDict(dict(steps=50, guidance=1.5, eta=0.0, context_frames=4))

    c.optim.lr = 1e-4
    c.optim.warmup_steps = 5_000
    c.optim.decay_steps = 500_000
    c.optim.b1, c.optim.b2 = 0.9, 0.999
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 1.0
    c.train.num_steps = 500_000
    c.train.image_every = 5_000
    c.train.eval_every = 10_000
    c.train.eval_batches = 4
    c.train.eval_batch_size = 16
    return c


def tiny(c):
    """A CPU-sized denoiser (1.3 M parameters) for 8-frame windows of a tiny VQ-GAN's latents."""
    m = c.model
    m.latent_dim = 64
    m.stats_frames = 256
    m.channels = 32
    m.channel_mult = (1, 2)  # 16x16, 8x8
    m.num_res_blocks = 1
    m.attn_levels = (1,)
    m.motion_levels = (0, 1)
    m.num_heads = 4
    m.motion_heads = 4
    m.context.max_context = 7
    m.context.interp_prob = 0.0  # the tiny model spends its capacity on prediction
    m.sampling.update(dict(steps=20, guidance=1.0, context_frames=2))
    c.data.seq_len = 8
    c.data.batch_size = 4
    c.optim.lr = 5e-4
    c.optim.end_lr = 5e-5
    c.optim.warmup_steps = 100
    c.optim.decay_steps = 3_000
    c.train.num_steps = 3_000
    c.train.log_every = 25
    c.train.ckpt_every = 500
    c.train.image_every = 0
    c.train.eval_every = 500
    c.train.eval_batches = 2
    c.train.eval_batch_size = 8
    return c


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny"))
    c = diffusion_config()
    if preset == "tiny":
        c = tiny(c)
    c.lock()
    return c
