"""Task.preflight: the config against the training data's metadata, one-line errors naming the key,
before anything is compiled (no model is built here)."""

import pytest

from teco_jax import checkpoint
from teco_jax.data.tfds_meta import DatasetMeta
from teco_jax.errors import UserError
from teco_jax.tasks.diffusion import DiffusionTask
from teco_jax.tasks.teco import TECOTask
from tests.helpers.configs import diffusion_tiny_config as diffusion_config
from tests.helpers.configs import teco_tiny_config as teco_config
from tests.helpers.configs import vqgan_tiny_config as vqgan_config


def _meta(**kw) -> DatasetMeta:
    """A code dataset as teco_jax.encode writes it: 8x8 codes of a 32-code VQ-GAN, 6 actions."""
    base = dict(name="codes", frame_feature="codes", frame_shape=(8, 8), num_actions=6, min_length=12,
                max_length=12, num_examples={"train": 4}, vocab_size=32, vqgan="")
    return DatasetMeta(**{**base, **kw})


def _teco(data_dir="data/codes", **model):
    c = teco_config(**model)
    with c.unlocked():
        c.data.dir = data_dir
    return TECOTask(c)


def _error(task, meta) -> str:
    with pytest.raises(UserError) as e:
        task.preflight(meta)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_teco_preflight_accepts_its_dataset_and_no_data():
    _teco().preflight(_meta())
    _teco().preflight(None)
    _teco(use_actions=False).preflight(_meta(num_actions=9))  # actions are ignored: any count will do


def test_teco_preflight_names_the_key_and_both_values():
    assert _error(_teco(vq_vocab=1024), _meta()) == (
        "config.model.vq_vocab=1024, but the code dataset data/codes has 32 codes (its VQ-GAN's codebook_size): "
        "set config.model.vq_vocab=32")
    assert _error(_teco(), _meta(frame_shape=(16, 16))) == (
        "config.model.vq_grid=(8, 8), but the code dataset data/codes has code grids of (16, 16): "
        "set config.model.vq_grid=(16, 16)")
    assert _error(_teco(), _meta(num_actions=9, action_names=tuple("abcdefghi"))) == (
        "data/codes: the dataset has 9 actions (a, b, c, d, e, f, g, h, i), but config.model.num_actions is 6: "
        "the model and its data must share one action set")
    assert _error(_teco(), _meta(frame_feature="video", frame_shape=(32, 32, 3))).startswith(
        "config.data.dir=data/codes holds raw frames, but TECO trains on VQ-GAN codes: encode them first")


def test_teco_preflight_refuses_rates_outside_zero_to_one():
    assert _error(_teco(action_dropout=1.5), None) == (
        "config.model.action_dropout=1.5: it is a probability, between 0 and 1")
    assert _error(_teco(z_dropout=-0.1), _meta()) == "config.model.z_dropout=-0.1: it is a probability, between 0 and 1"
    _teco(action_dropout=1.0, z_dropout=0.0).preflight(_meta())


def test_teco_preflight_checks_the_recorded_vqgan(tmp_path):
    gone = str(tmp_path / "vqgan_deleted")
    assert _error(_teco(vqgan_dir=""), _meta(vqgan=gone)) == (
        f"the code dataset data/codes was encoded by the VQ-GAN {gone}, which does not exist "
        f"(config.model.vqgan_dir is empty, so TECO uses it): set config.model.vqgan_dir")
    assert _error(_teco(vqgan_dir=""), _meta()) == (
        "config.model.vqgan_dir is empty and the code dataset data/codes does not name its VQ-GAN: "
        "set config.model.vqgan_dir")
    _teco(vqgan_dir="").preflight(_meta(vqgan=str(tmp_path)))
    _teco(vqgan_dir="random").preflight(_meta(vqgan=gone))  # the config's own VQ-GAN wins


def _frames(**kw) -> DatasetMeta:
    return _meta(**{"frame_feature": "video", "frame_shape": (16, 16, 3), "vocab_size": None, **kw})


def test_diffusion_preflight_with_a_random_vqgan():
    """model.vqgan_dir='random': 4x down-sampling to model.latent_grid (4, 4), i.e. 16x16 frames."""
    task = DiffusionTask(diffusion_config("data/frames", latent_mean=(0.0,) * 4, latent_std=(1.0,) * 4))
    task.preflight(_frames())
    task.preflight(None)
    assert _error(task, _frames(frame_shape=(32, 32, 3))) == (
        "config.data.dir=data/frames has 32x32 frames, but the VQ-GAN config.model.vqgan_dir=random takes "
        "16x16 frames")
    assert _error(task, _meta()).startswith("config.data.dir=data/frames holds VQ-GAN codes, but the diffusion "
                                            "baseline trains on raw frames")
    assert _error(task, _frames(num_actions=4)).startswith("data/frames: the dataset has 4 actions, but "
                                                           "config.model.num_actions is 6")


def test_diffusion_preflight_reads_the_vqgan_config(tmp_path):
    checkpoint.save_config(tmp_path / "vqgan", vqgan_config())  # 32x32 frames -> 16x16 latents of dim 8
    vq = str(tmp_path / "vqgan")
    ok = dict(vqgan_dir=vq, latent_dim=8, latent_grid=(16, 16), latent_mean=(0.0,) * 8, latent_std=(1.0,) * 8)
    frames = _frames(frame_shape=(32, 32, 3))
    DiffusionTask(diffusion_config("data/frames", **ok)).preflight(frames)
    assert _error(DiffusionTask(diffusion_config("data/frames", **{**ok, "latent_grid": (8, 8)})), frames) == (
        f"config.model.latent_grid=(8, 8), but the VQ-GAN {vq} makes (16, 16) latents of 32x32 frames: "
        f"set config.model.latent_grid=(16, 16)")
    assert _error(DiffusionTask(diffusion_config("data/frames", **{**ok, "latent_dim": 4, "latent_mean": (0.0,) * 4,
                                                                   "latent_std": (1.0,) * 4})), frames) == (
        f"config.model.latent_dim=4, but the VQ-GAN {vq} has latent_dim=8: set config.model.latent_dim=8")
    missing = str(tmp_path / "nowhere")
    assert _error(DiffusionTask(diffusion_config("data/frames", **{**ok, "vqgan_dir": missing})), frames) == (
        f"config.model.vqgan_dir={missing} does not exist")
