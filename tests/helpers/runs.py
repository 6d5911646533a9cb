"""Tiny untrained runs: a config.json and a step-1 checkpoint of numpy-drawn parameters (initializing
the models with JAX would compile for longer than the tests that use them), and the small datasets
around them."""

import json
from pathlib import Path

import jax
import numpy as np

from teco_jax import checkpoint, encode, trainer
from teco_jax.data import tfds_write
from tests.helpers.configs import teco_tiny_config, vqgan_tiny_config
from tests.helpers.episodes import write_episodes


def random_param(path, x, rng):
    """Roughly what the initializers draw: N(0, 1/fan_in) weights, unit scales, zero biases."""
    if len(x.shape) < 2:
        return (np.ones if "'scale'" in jax.tree_util.keystr(path) else np.zeros)(x.shape, x.dtype)
    return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)


def save_untrained(config, workdir) -> None:
    """config.json and a step-1 checkpoint of random parameters (numpy-drawn: initializing
    the models with JAX would compile for longer than everything else here)."""
    t = trainer.Trainer(config, workdir)
    rng = np.random.default_rng(0)
    a = t.abstract_state
    zeros = lambda tree: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), tree)  # noqa: E731
    state = a.replace(step=np.zeros((), np.int32), key=jax.random.key(0), rest=zeros(a.rest),
                      opt_state=zeros(a.opt_state),
                      params=jax.tree_util.tree_map_with_path(lambda p, x: random_param(p, x, rng), a.params))
    checkpoint.save_config(workdir, config)
    ckpt = checkpoint.Checkpointer(workdir)
    ckpt.save(1, state, force=True)
    ckpt.wait()
    ckpt.close()


def world_model_runs(tmp: Path) -> tuple[Path, list[dict]]:
    """32x32 frames -> a VQ-GAN (16 codes of dim 8 on a 16x16 grid) -> codes -> a TECO that finds
    its VQ-GAN through the code dataset: tmp/{src,frames,vqgan,codes,teco}. Returns tmp and the
    3 test episodes (8 frames each)."""
    episodes = write_episodes(tmp / "src", {"train": 2, "test": 3}, size=32, length=8)
    tfds_write.build_from_episodes(tmp / "src", tmp / "frames", name="frames32", num_actions=6)
    save_untrained(vqgan_tiny_config(tmp / "frames"), tmp / "vqgan")
    encode.encode_dataset(tmp / "vqgan", tmp / "frames", tmp / "codes")
    teco = teco_tiny_config(vqgan_dir="", action_dropout=0.5, vq_vocab=16, vq_embed_dim=8, vq_grid=(16, 16))
    save_untrained(trainer.config_replace(teco, **{"data.dir": str(tmp / "codes")}), tmp / "teco")
    return tmp, episodes["test"]


def context(episodes, frames):
    """The first `frames` frames of the first two episodes: (2, frames, H, W, 3) uint8."""
    return np.stack([ep["video"][:frames] for ep in episodes[:2]])


def nine_action_frames(root):
    """A 32x32 raw-frame dataset whose meta.json names 9 actions (the tiny TECO has 6)."""
    write_episodes(root / "src", {"test": 2}, size=32, length=8, num_actions=9)
    (root / "src" / "meta.json").write_text(json.dumps({"num_actions": 9, "action_names": list("abcdefghi")}))
    tfds_write.build_from_episodes(root / "src", root / "frames9")
    return root / "frames9"
