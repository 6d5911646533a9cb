"""Tiny configs and synthetic data for tests and checks; not used by training.

The test suite (through tests/helpers/) and scripts/multihost_check.py build their runs from
these, so a check outside tests/ needs nothing from the test suite:
- synthetic episodes: `make_episode`, `write_episodes` (root/{split}/ep_XXXX.npz files), and
  `write_tiny_dataset` (the small TFDS datasets the sharding and multi-process checks train on);
- a toy task (`ToyTask`, registered as "toy": a conv autoencoder on frames) and its config
  `toy_config`, so the training machinery is tested on its own;
- tiny TECO and VQ-GAN configs (`teco_tiny_config`, `vqgan_tiny_config`) and the same on a
  device mesh with a batch of 8 (`teco_mesh_config`, `vqgan_mesh_config`).

Importing this module registers the toy task. The trainer and the dataset writer are
imported where they are used (tensorflow_datasets takes seconds to import).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from teco_jax import config_base, parallel
from teco_jax import logging as tlog
from teco_jax.nn import layers
from teco_jax.tasks import base

# --------------------------------------------------------------------------- synthetic episodes


def make_episode(rng: np.random.Generator, length: int = 12, size: int = 8, num_actions: int = 6) -> dict:
    """One random episode: uint8 video (length, size, size, 3), int32 actions, float32 poses, a 5x5 layout."""
    return {
        "video": rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        "actions": rng.integers(0, num_actions, (length,), dtype=np.int32),
        "pose": rng.normal(size=(length, 3)).astype(np.float32),
        "layout": rng.integers(0, 2, (5, 5), dtype=np.uint8),
    }


def write_episodes(root: Path, counts: dict[str, int], seed: int = 0, **kw) -> dict[str, list[dict]]:
    """Write root/{split}/ep_XXXX.npz episodes; returns them in file order."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        written[split] = []
        for i in range(n):
            ep = make_episode(rng, **kw)
            np.savez(root / split / f"ep_{i:04d}.npz", **ep)
            written[split].append(ep)
    return written


def write_tiny_dataset(tmp: Path, model: str) -> Path:
    """A small TFDS dataset under `tmp` for `teco_mesh_config` ("teco": 8 frames of 8x8 codes < 32 and
    actions, 12 train and 2 test episodes) or `vqgan_mesh_config` (else: 32x32 frames of 4-frame
    episodes, 12 train and 2 test); returns its directory."""
    from teco_jax.data import tfds_write  # deferred: tensorflow_datasets takes seconds to import

    if model == "teco":  # VQ-GAN codes (8 frames of 8x8 codes < 32) and actions
        rng = np.random.default_rng(0)

        def episodes(n):
            return [(f"e{i}", {"codes": rng.integers(0, 32, (8, 8, 8)).astype(np.int16),
                               "actions": rng.integers(0, 6, (8,)).astype(np.int32)}) for i in range(n)]

        tfds_write.write_dataset(tmp / "codes", "codes_toy", {"train": iter(episodes(12)), "test": iter(episodes(2))},
                                 num_actions=6, vocab_size=32)
        return tmp / "codes"
    write_episodes(tmp / "frames_src", {"train": 12, "test": 2}, size=32, length=4)
    tfds_write.build_from_episodes(tmp / "frames_src", tmp / "frames", name="frames32", num_actions=6)
    return tmp / "frames"


# --------------------------------------------------------------------------- the toy task


class ToyAutoencoder(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.enc = layers.conv(3, width, 3, rngs=rngs)
        self.mid = layers.dense(width, width, axes=("embed", "mlp"), rngs=rngs)
        self.dec = layers.conv(width, 3, 3, rngs=rngs)

    def __call__(self, x):
        return self.dec(nnx.relu(self.mid(nnx.relu(self.enc(x)))))


@base.register
class ToyTask(base.Task):
    """A tiny conv autoencoder task, so the training machinery is tested on its own."""

    name = "toy"
    batch_keys = ("video",)

    def build_model(self, rngs):
        return ToyAutoencoder(self.config.model.width, rngs)

    def prepare_batch(self, batch):
        v = batch["video"]
        return {"video": v.reshape((-1,) + v.shape[2:])}

    def loss(self, model, batch, key, step, constants):
        x = batch["video"].astype(jnp.float32) / 127.5 - 1
        noise = 0.01 * jax.random.normal(key, x.shape)
        err = jnp.mean(jnp.square(model(x + noise) - x))
        return err, {"mse": err}

    def visualize(self, model, batch, constants):
        """Inputs over reconstructions (gathered from every process when the batch spans several)."""
        x = batch["video"][:4].astype(jnp.float32) / 127.5 - 1
        return tlog.image_grid([parallel.to_host(batch["video"][:4]), tlog.to_uint8(parallel.to_host(model(x)))])

    def evaluate(self, model, batches, constants):
        errs = [float(jnp.mean(jnp.square(model(b["video"][:, 0] / 127.5 - 1) - (b["video"][:, 0] / 127.5 - 1))))
                for b in batches]
        return {"mse": float(np.mean(errs))}


def toy_config(data_dir: str, **train) -> ml_collections.ConfigDict:
    """The toy task on the frames dataset `data_dir`: batch 4, 6 steps; `train` overrides config.train."""
    c = config_base.base()
    c.task = "toy"
    c.data.update(dict(dir=str(data_dir), batch_size=4, read_threads=0, prefetch=1))
    c.model.width = 8
    c.optim.update(dict(warmup_steps=2, decay_steps=100, lr=1e-2))
    c.train.update(dict(num_steps=6, log_every=1, ckpt_every=3, image_every=0, eval_every=0,
                        eval_batches=1, eval_batch_size=4))
    c.train.update(train)
    c.lock()
    return c


# --------------------------------------------------------------------------- tiny TECO and VQ-GAN

TECO_SEQ_LEN = 6  # the tiny TECO's window in frames
TECO_VOCAB = 32  # the codes of its (random, "vqgan_dir='random'") VQ-GAN


def teco_tiny_config(**model) -> ml_collections.ConfigDict:
    """A tiny TECO on 8x8 grids of codes < 32 (random VQ-GAN embeddings of size 8), window 6, batch 2;
    `model` overrides config.model (a `memory` dict becomes a ConfigDict)."""
    c = config_base.base()
    c.task = "teco"
    c.data.seq_len = TECO_SEQ_LEN
    c.data.batch_size = 2
    m = c.model
    m.update(dict(vqgan_dir="random", vq_vocab=TECO_VOCAB, vq_embed_dim=8, vq_grid=(8, 8), num_actions=6,
                  use_actions=True, action_embed_dim=4, action_dropout=0.0, embedding_dim=8, codebook_size=16,
                  code_dim=4, z_ds=4, n_cond=1, drop_loss_rate=0.5, label_smoothing=0.01))
    m.encoder = ml_collections.ConfigDict(dict(depths=(8, 16), blocks=1))
    m.decoder = ml_collections.ConfigDict(dict(depths=(8, 16), blocks=1))
    m.transformer = ml_collections.ConfigDict(dict(width=16, mlp_dim=32, num_heads=2, num_layers=2))
    m.maskgit = ml_collections.ConfigDict(dict(token_dim=8, width=16, mlp_dim=32, num_heads=2, num_layers=1))
    m.sampling = ml_collections.ConfigDict(dict(schedule="draft_revise", draft_steps=2, revise_steps=2,
                                                revise_rounds=1, confidence_steps=2, temperature=1.0))
    if "memory" in model:
        model = {**model, "memory": ml_collections.ConfigDict(model["memory"])}
    m.update(model)
    c.lock()
    return c


def vqgan_tiny_config(data_dir="", **loss) -> ml_collections.ConfigDict:
    """A tiny VQ-GAN (32x32 frames, 16 codes of dimension 8 on a 16x16 grid) with its discriminator,
    batch 4, 3 steps; `loss` overrides config.loss."""
    c = config_base.base()
    c.task = "vqgan"
    c.data.dir = str(data_dir)
    c.data.batch_size = 4
    c.data.read_threads = 0
    c.model.update(dict(resolution=32, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_mid_blocks=1,
                        latent_dim=8, codebook_size=16, code_dim=4, beta=0.25, disc_channels=8, disc_layers=2))
    c.loss.update(dict(recon="l1", recon_weight=1.0, lpips_net="vgg16", lpips_weight=0.0, gan_weight=0.5,
                       disc_start=0))
    c.loss.update(loss)
    c.train.update(dict(num_steps=3, log_every=1, ckpt_every=3, image_every=3, eval_every=0,
                        eval_batches=1, eval_batch_size=4))
    c.lock()
    return c


def teco_mesh_config(data_dir, mesh, **extra) -> ml_collections.ConfigDict:
    """The tiny TECO on `data_dir` (write_tiny_dataset(..., "teco")) over mesh (data, fsdp, model), batch 8;
    `extra` are dotted-key overrides."""
    from teco_jax import trainer  # deferred: the trainer loads tensorflow_datasets and grain (seconds)

    return trainer.config_replace(teco_tiny_config(), **{
        "data.dir": str(data_dir), "data.batch_size": 8, "data.read_threads": 0, "data.prefetch": 1,
        "mesh.shape": mesh, "optim.lr": 1e-3, "optim.warmup_steps": 0, **extra})


def vqgan_mesh_config(data_dir, mesh, **extra) -> ml_collections.ConfigDict:
    """The tiny VQ-GAN on `data_dir` (write_tiny_dataset(..., "vqgan")) over mesh (data, fsdp, model),
    batch 8; `extra` are dotted-key overrides."""
    from teco_jax import trainer  # deferred: the trainer loads tensorflow_datasets and grain (seconds)

    return trainer.config_replace(vqgan_tiny_config(data_dir), **{
        "data.batch_size": 8, "data.prefetch": 1, "mesh.shape": mesh, "optim.lr": 1e-3,
        "optim.warmup_steps": 0, **extra})
