"""The diffusion task: context masks, latent statistics, the loss, and the whole path through the
shared trainer (train, checkpoint, restore) into DiffusionWorldModel rollouts."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax import trainer
from teco_jax.diffusion.world_model import DiffusionWorldModel
from teco_jax.tasks import base
from teco_jax.tasks import diffusion as dtask
from tests.helpers.configs import diffusion_tiny_config as task_config


def test_registered():
    assert base.get("diffusion") is dtask.DiffusionTask


def test_context_masks():
    m = np.asarray(dtask.context_masks(jax.random.key(0), 4000, 8, max_context=5, uncond_prob=0.1,
                                       interp_prob=0.2, interp_factors=(2, 4)))
    n = m.sum(1)
    uncond = n == 0
    assert 0.07 < uncond.mean() < 0.13  # context dropout
    prefix = np.array([np.array_equal(r, np.arange(8) < k) for r, k in zip(m, n)])
    interp = np.array([np.array_equal(r, np.arange(8) % 2 == 0) or np.array_equal(r, np.arange(8) % 4 == 0)
                       for r in m])
    assert np.all(prefix | interp | uncond)  # nothing else
    assert 0.14 < (interp & ~uncond).mean() < 0.22
    ks = n[prefix & ~interp & ~uncond]
    assert set(ks.tolist()) == {1, 2, 3, 4, 5}  # k ~ U{1..max_context}
    # no interpolation, no dropout: always a non-empty prefix shorter than the window
    m = np.asarray(dtask.context_masks(jax.random.key(1), 500, 8, max_context=7, uncond_prob=0.0))
    assert m.sum(1).min() >= 1 and m.sum(1).max() <= 7 and np.all(np.diff(m, axis=1) <= 0)


def test_masked_mse_counts_only_generated_frames():
    pred = jnp.zeros((1, 3, 1, 1, 2))
    target = jnp.asarray([1.0, 2.0, 3.0])[None, :, None, None, None] * jnp.ones((1, 3, 1, 1, 2))
    assert float(dtask.masked_mse(pred, target, jnp.asarray([[0.0, 1.0, 1.0]]))) == pytest.approx((4 + 9) / 2)


@pytest.fixture(scope="module")
def task(tfds_dir):
    return dtask.DiffusionTask(task_config(tfds_dir, latent_grid=(2, 2)))


def test_latent_stats_are_computed_into_the_config(task):
    m = task.config.model
    assert len(m.latent_mean) == len(m.latent_std) == m.latent_dim
    assert all(s > 0 for s in m.latent_std)
    # they normalize the training latents: mean ~0, std ~1 per channel
    from teco_jax.data import pipeline

    ds, _ = pipeline.make_dataset(task.config.data.dir, "train", seq_len=4, batch_size=2, read_threads=0, prefetch=0)
    batch = next(iter(ds))
    z = np.asarray(task.latents(task.constants(), jnp.asarray(batch["video"])))
    assert z.shape == (2, 4, 2, 2, m.latent_dim)
    assert np.all(np.abs(z.reshape(-1, m.latent_dim).mean(0)) < 1.0)


def test_loss_is_finite_and_trains(task, tfds_dir):
    from teco_jax.data import pipeline

    ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=4, batch_size=2, read_threads=0, prefetch=0)
    batch = {k: jnp.asarray(v) for k, v in task.prepare_batch(next(iter(ds))).items()}
    model = task.build_model(nnx.Rngs(0))
    graph, params = nnx.split(model)
    const = task.constants()

    @jax.jit
    def step(p):
        (loss, metrics), g = jax.value_and_grad(
            lambda p: task.loss(nnx.merge(graph, p), batch, jax.random.key(1), 0, const), has_aux=True)(p)
        return loss, metrics, jax.tree.map(lambda a, b: a - 0.05 * b, p, g)

    l0, metrics, params = step(params)
    assert np.isfinite(float(l0)) and {"v_mse", "context_frames", "uncond_frac", "alpha_mean"} <= set(metrics)
    for _ in range(5):
        l1, _, params = step(params)
    assert float(l1) < float(l0)


@pytest.mark.slow
def test_train_restore_and_roll_out(tfds_dir, tmp_path):
    cfg = trainer.config_replace(task_config(tfds_dir, latent_grid=(2, 2)), **{"train.image_every": 2})
    state = trainer.Trainer(cfg, tmp_path).train()
    assert int(state.step) == 2
    assert list((tmp_path / "images").glob("*"))  # visualize(): real rows and sampled rows
    saved = json.loads((tmp_path / "config.json").read_text())["model"]
    assert len(saved["latent_mean"]) == cfg.model.latent_dim  # the statistics travel with the checkpoint
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/v_mse" in r for r in metrics)

    wm = DiffusionWorldModel.load(tmp_path)
    assert wm.window == 4 and wm.num_actions == 6 and wm.frame_shape == (8, 8, 3)
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    actions = rng.integers(0, 6, (2, 9)).astype(np.int32)
    video = wm.rollout(context, actions, 9, key=0)
    assert video.shape == (2, 9, 8, 8, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[:, :3], context)
    np.testing.assert_array_equal(wm.rollout(context, actions, 9, key=0), video)  # seeded
    assert wm.rollout(context, None, 9, key=1).shape == (2, 9, 8, 8, 3)  # unconditional
    with pytest.raises(ValueError, match="actions must lie"):
        wm.rollout(context, actions + 6, 9)
    with pytest.raises(ValueError, match="fewer than"):
        wm.rollout(context, None, 2)
    up = wm.interpolate(context, 2, key=0)
    assert up.shape == (2, 5, 8, 8, 3)
    np.testing.assert_array_equal(up[:, ::2], context)
