"""A tiny conv autoencoder task, so the training machinery is tested on its own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax import config_base, parallel
from teco_jax import logging as tlog
from teco_jax.nn import layers
from teco_jax.tasks import base


class ToyAutoencoder(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.enc = layers.conv(3, width, 3, rngs=rngs)
        self.mid = layers.dense(width, width, axes=("embed", "mlp"), rngs=rngs)
        self.dec = layers.conv(width, 3, 3, rngs=rngs)

    def __call__(self, x):
        return self.dec(nnx.relu(self.mid(nnx.relu(self.enc(x)))))


@base.register
class ToyTask(base.Task):
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


def toy_config(data_dir: str, **train):
    c = config_base.base()
    c.task = "toy"
    c.data.dir = str(data_dir)
    c.data.batch_size = 4
    c.data.read_threads = 0
    c.data.prefetch = 1
    c.model.width = 8
    c.optim.warmup_steps = 2
    c.optim.decay_steps = 100
    c.optim.lr = 1e-2
    c.train.update(dict(num_steps=6, log_every=1, ckpt_every=3, image_every=0, eval_every=0,
                        eval_batches=1, eval_batch_size=4))
    c.train.update(train)
    c.lock()
    return c


def get_config(arg=""):
    """So the CLI can load this file: `--config tests/toy_task.py:DATA_DIR`."""
    return toy_config(arg)
