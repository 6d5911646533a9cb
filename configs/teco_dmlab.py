"""TECO on DMLab-style 64x64 video (VQ-GAN codes 16x16, 1024 codes), the paper's settings.

    python -m teco_jax.train --config configs/teco_dmlab.py:tiny --workdir runs/teco \
        --config.data.dir=runs/maze_codes

Presets: "" (paper size: ~172 M parameters excluding the VQ-GAN), "tiny" (2-core CPU),
"cpu" (the CPU-scale grid world of `python -m data_gen.maze --preset cpu` and the `vqgan_dmlab.py:cpu`
tokenizer: 8x8 codes of 32x32 frames, 128-frame window; see docs/cpu_world.md), "smooth" (the same
for `--preset smooth`, the world of smooth motion).
The VQ-GAN is the one recorded in the code dataset (teco_jax.encode), unless
config.model.vqgan_dir names one.
"""

import ml_collections

from teco_jax import config_base
from teco_jax.models.options import Options


def teco_config():
    c = config_base.base()
    c.task = "teco"
    c.data.seq_len = 300
    c.data.batch_size = 32

    m = c.model
    m.vqgan_dir = ""
    m.vq_vocab = 1024  # the VQ-GAN's codebook size
    m.vq_embed_dim = 256  # the VQ-GAN's code embedding size (its latent_dim)
    m.vq_grid = (16, 16)
    m.num_actions = 6
    m.use_actions = True
    m.action_embed_dim = 16
    m.action_dropout = 0.5
    m.encoder = ml_collections.ConfigDict(dict(depths=(256, 512), blocks=2))
    m.decoder = ml_collections.ConfigDict(dict(depths=(256, 512), blocks=4))
    m.embedding_dim = 64
    m.codebook_size = 1024
    m.code_dim = 32
    m.z_ds = 8  # 8x8 TECO grid -> 1 token per frame
    m.transformer = ml_collections.ConfigDict(dict(width=1024, mlp_dim=4096, num_heads=16, num_layers=8))
    m.maskgit = ml_collections.ConfigDict(dict(token_dim=256, width=512, mlp_dim=2048, num_heads=8, num_layers=8))
    m.n_cond = 1
    m.drop_loss_rate = 0.9
    m.label_smoothing = 0.01
    # Not in the paper, all off here: remat, loss_chunk, z_dropout and the memory of earlier
    # frames (teco_jax/models/options.py documents each and holds their defaults).
    m.update(Options().as_config())
    m.sampling = ml_collections.ConfigDict(dict(schedule="draft_revise", draft_steps=8, revise_steps=8,
                                                revise_rounds=2, confidence_steps=8, temperature=1.0,
                                                choice_temperature=4.5, slide=1, show="sample",
                                                feedback="prior", decode_temperature=0.0))

    c.optim.lr = 1e-4
    c.optim.warmup_steps = 5_000
    c.optim.decay_steps = 1_000_000
    c.optim.b1, c.optim.b2 = 0.9, 0.95
    c.optim.weight_decay = 1e-5
    c.train.num_steps = 1_000_000
    c.train.image_every = 0
    c.train.eval_batches = 4
    c.train.eval_batch_size = 8
    return c


def tiny(c):
    """A CPU-sized TECO for 16-frame clips of a tiny VQ-GAN's codes.

    Two departures from the paper's shape, both measured on this CPU at equal steps: the
    history gets 2x2 temporal tokens per frame (z_ds 2; a single 128-wide token cannot carry
    the previous frame), and DropLoss keeps half the frames of many short clips, so the
    decoder and the prior see more frames per step. Teacher-forced next-frame code accuracy
    at step 600: 0.035 with these settings, 0.009 with z_ds 8 / 64 frames / DropLoss 0.9.
    """
    m = c.model
    m.vq_vocab = 1024  # the tiny VQ-GAN's codebook
    m.vq_embed_dim = 64
    m.encoder.depths, m.encoder.blocks = (16, 32), 1  # the encoder runs on every frame: keep it narrow
    m.decoder.depths, m.decoder.blocks = (32, 64), 1
    m.embedding_dim = 32
    m.codebook_size = 256
    m.code_dim = 16
    m.transformer.update(dict(width=128, mlp_dim=512, num_heads=4, num_layers=2))
    m.maskgit.update(dict(token_dim=64, width=128, mlp_dim=512, num_heads=4, num_layers=2))
    m.z_ds = 2
    m.drop_loss_rate = 0.5
    c.data.seq_len = 16
    c.data.batch_size = 8
    c.optim.lr = 1e-3
    c.optim.end_lr = 1e-4
    c.optim.warmup_steps = 200
    c.optim.decay_steps = 3_000
    c.train.num_steps = 3_000
    c.train.log_every = 25
    c.train.ckpt_every = 500
    c.train.eval_every = 500
    c.train.eval_batches = 4
    c.train.eval_batch_size = 8
    return c


def cpu(c):
    """The tiny TECO for the CPU world: its window (data.seq_len = 128 frames, whole episodes)
    covers the benchmark's context and predicted frames, so it can show memory."""
    c = tiny(c)
    m = c.model
    m.vq_vocab = 128
    m.vq_grid = (8, 8)
    m.z_ds = 2
    m.codebook_size = 512  # TECO's z carries 9 bits per 8x8-pixel cell: colours survive (docs/cpu_world.md)
    m.drop_loss_rate = 0.75
    m.z_dropout = 0.5
    m.action_dropout = 0.1  # most clips keep their actions: the benchmark is action-conditioned
    # Rollouts read back what h_t alone predicts (show = feedback = "mean", docs/cpu_world.md):
    # the transformer and the memory find places from the frames it reads.
    # Pose memory (teco_jax/pose_memory.py): the decoder also reads the earlier frames taken at
    # the pose the actions lead to, so a rollout finds known places again after a view it got
    # wrong (docs/cpu_world.md, "Pose memory"). The motion per action is fitted on the training
    # clips' poses when training starts and stored in the run's config.
    m.memory.motion = "fit"
    m.sampling.update(dict(show="mean", feedback="mean", temperature=0.0))
    c.data.seq_len = 128
    c.data.batch_size = 4  # twice the steps of batch 8 per CPU-minute, and more learning per minute
    c.optim.decay_steps = 3_000
    c.train.num_steps = 3_000
    c.train.eval_batch_size = 8
    return c


def smooth(c):
    """The CPU recipe for the smooth maze world (`python -m data_gen.maze --preset smooth`: 15-degree
    turns, 0.15-cell steps, so no view recurs exactly): the pose memory reads frame t - 1 and
    the two earlier frames nearest the dead-reckoned pose among those at least 8 frames old (a
    rollout's own recent frames would otherwise always be nearest and crowd the context's views
    of a place out), each turned into frame t's heading, with their relative poses; the decoder
    corrects the near views. Steps are never blocked in that world (the fit prints that every
    step of every action moved), so an unchanged generated frame does not stop the dead
    reckoning (docs/cpu_world.md, "Pose memory")."""
    c = cpu(c)
    m = c.model
    m.memory.update(dict(min_age=8, latest=True, detect_blocked=False))
    # Rollouts draw each code from the decoder rather than its most probable one: the places
    # the context never showed get a plausible view, not a flat average (docs/cpu_world.md,
    # "Sampling the decoder's codes").
    m.sampling.decode_temperature = 1.0
    return c


def get_config(arg: str = ""):
    preset = config_base.check_preset(arg, ("", "tiny", "cpu", "smooth"))
    c = teco_config()
    if preset == "tiny":
        c = tiny(c)
    elif preset == "cpu":
        c = cpu(c)
    elif preset == "smooth":
        c = smooth(c)
    c.lock()
    return c
