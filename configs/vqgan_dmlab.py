"""VQ-GAN tokenizer for DMLab-style 64x64 frames -> 16x16 codes (4x down-sampling).

    python -m teco_jax.train --config configs/vqgan_dmlab.py:tiny --workdir runs/vqgan \
        --config.data.dir=runs/quickstart/maze_tfds

Presets: "" (full size, for accelerators), "tiny" (trains on a 2-core CPU in minutes),
"cpu" (the CPU-scale world, `python -m data_gen.maze --preset cpu`: 32x32 frames -> 8x8 codes).
"""

from teco_jax import config_base


def vqgan_config(resolution: int, channel_mult: tuple[int, ...]):
    c = config_base.base()
    c.task = "vqgan"
    c.data.seq_len = 1  # frames are drawn one per episode clip
    c.data.batch_size = 64

    m = c.model
    m.resolution = resolution
    m.channels = 128
    m.channel_mult = channel_mult
    m.num_res_blocks = 2
    m.num_mid_blocks = 2
    m.latent_dim = 256
    m.codebook_size = 1024
    m.code_dim = 32  # factorized codebook: codes live in a small l2-normalized space
    m.beta = 0.25
    m.disc_channels = 64
    m.disc_layers = 3

    loss = c.loss
    loss.recon = "l1"
    loss.recon_weight = 1.0
    loss.lpips_net = "vgg16"
    loss.lpips_weight = 1.0
    loss.gan_weight = 0.1
    loss.disc_start = 20_000

    c.optim.lr = 1e-4
    c.optim.warmup_steps = 2_000
    c.optim.decay_steps = 200_000
    c.optim.b2 = 0.99
    c.optim.weight_decay = 0.0
    c.train.num_steps = 200_000
    c.train.eval_batches = 16
    c.train.eval_batch_size = 32
    return c


def tiny(c):
    """A CPU-sized model (~0.5 M parameters): narrow at full resolution, where convolutions cost most."""
    m = c.model
    m.channels = 16
    m.channel_mult = (1, 2, 4) + (4,) * (len(m.channel_mult) - 3)
    m.num_res_blocks = 1
    m.num_mid_blocks = 1
    m.latent_dim = 64
    # Low-dimensional codes keep a 1024-entry codebook in use (94% after 1000 steps): 1024x8
    # gave +0.4 dB PSNR at step 1000 over 512x16, +1.2 dB over 256x16.
    m.codebook_size = 1024
    m.code_dim = 8
    m.disc_channels = 16
    m.disc_layers = 2
    c.data.batch_size = 8  # more, smaller steps: better PSNR per CPU-minute than batch 16
    # On a CPU, VGG16-LPIPS costs 4x the rest of the step; AlexNet-LPIPS costs ~10%.
    c.loss.lpips_net = "alexnet"
    c.loss.lpips_weight = 0.1
    c.loss.disc_start = 3_500  # the GAN fine-tunes the last 500 steps
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.optim.decay_steps = 4_000
    c.optim.end_lr = 1e-4
    c.train.num_steps = 4_000
    c.train.log_every = 25
    c.train.ckpt_every = 500
    c.train.image_every = 500
    c.train.eval_every = 1_000
    c.train.eval_batches = 4
    c.train.eval_batch_size = 32
    return c


def cpu(c):
    """The tiny model on the CPU world's 32x32 frames, with a codebook sized for its flat
    colours: 128 codes keep TECO's targets few (see docs/cpu_world.md)."""
    c = tiny(c)
    c.model.codebook_size = 128
    c.data.batch_size = 16
    c.loss.disc_start = 2_500
    c.optim.decay_steps = 3_000
    c.train.num_steps = 3_000
    return c


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny", "cpu"))
    c = vqgan_config(resolution=32 if preset == "cpu" else 64, channel_mult=(1, 2, 2))
    if preset == "tiny":
        c = tiny(c)
    elif preset == "cpu":
        c = cpu(c)
    c.lock()
    return c
