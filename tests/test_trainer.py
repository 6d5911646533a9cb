"""The shared training machinery, on a toy task: checkpoints, exact resume, data state."""

import jax
import numpy as np
import pytest

from teco_jax import checkpoint, trainer
from teco_jax.errors import UserError
from tests.helpers.toy_task import toy_config


def _params(state):
    return jax.tree.leaves(jax.device_get(state.params))


def test_checkpoint_round_trip(tfds_dir, tmp_path):
    cfg = toy_config(tfds_dir, num_steps=4, ckpt_every=4)
    t = trainer.Trainer(cfg, tmp_path)
    state = t.train()
    ckpt = checkpoint.Checkpointer(tmp_path)
    assert ckpt.latest_step() == 4
    restored = ckpt.restore(t.abstract_state)
    ckpt.close()
    assert int(restored.step) == 4
    for a, b in zip(_params(state), _params(restored)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(restored.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (tmp_path / "config.json").exists() and (tmp_path / "metrics.jsonl").exists()


def test_resume_is_exact_and_restores_the_data_iterator(tfds_dir, tmp_path):
    cfg = toy_config(tfds_dir, num_steps=7, ckpt_every=3)
    straight = trainer.Trainer(cfg, tmp_path / "a").train()
    trainer.Trainer(cfg, tmp_path / "b").train(num_steps=3)  # stops after the step-3 checkpoint
    resumed = trainer.Trainer(cfg, tmp_path / "b").train()  # picks up at step 3
    assert int(resumed.step) == 7
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_restore_rejects_a_mismatched_checkpoint(tfds_dir, tmp_path):
    trainer.Trainer(toy_config(tfds_dir, num_steps=1, ckpt_every=1), tmp_path).train()
    wider = toy_config(tfds_dir, num_steps=2)
    wider.unlock()
    wider.model.width = 16
    (tmp_path / "config.json").unlink()  # else the stored config refuses it first (tests/test_workdir.py)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="does not match"):
        trainer.Trainer(wider, tmp_path).train()


def test_restore_model_from_workdir_alone(tfds_dir, tmp_path):
    state = trainer.Trainer(toy_config(tfds_dir, num_steps=2, ckpt_every=2), tmp_path).train()
    model, config = trainer.restore_model(tmp_path)
    assert config.task == "toy"
    x = np.zeros((1, 8, 8, 3), np.float32)
    t = trainer.Trainer(toy_config(tfds_dir), tmp_path / "unused")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(t.model(state)(x)), rtol=1e-6)


def test_init_from_starts_a_new_run_from_another_runs_parameters(tfds_dir, tmp_path):
    first = trainer.Trainer(toy_config(tfds_dir, num_steps=3, ckpt_every=3), tmp_path / "a").train()
    cfg = toy_config(tfds_dir, num_steps=1, ckpt_every=1)
    cfg.unlock()
    cfg.train.init_from = str(tmp_path / "a")
    start = trainer.Trainer(cfg, tmp_path / "b").train(num_steps=0)  # the starting state, untrained
    assert int(start.step) == 0
    for a, b in zip(_params(first), _params(start)):
        np.testing.assert_array_equal(a, b)
    assert all(not np.any(np.asarray(m)) for m in jax.tree.leaves(start.opt_state) if np.ndim(m))  # fresh Adam
    fresh = trainer.Trainer(toy_config(tfds_dir), tmp_path / "c").create_state()
    assert any(not np.array_equal(a, b) for a, b in zip(_params(first), _params(fresh)))
    assert int(trainer.Trainer(cfg, tmp_path / "d").train().step) == 1  # and it trains on from there


def test_init_from_refuses_parameters_of_another_shape(tfds_dir, tmp_path):
    trainer.Trainer(toy_config(tfds_dir, num_steps=1, ckpt_every=1), tmp_path / "a").train()
    wider = toy_config(tfds_dir, num_steps=1)
    wider.unlock()
    wider.model.width = 16
    wider.train.init_from = str(tmp_path / "a")
    with pytest.raises(UserError, match=r"init_from=.*a: its parameters do not fit .*5 arrays differ; \[\'dec\'\]"):
        trainer.Trainer(wider, tmp_path / "b").train()
    assert not (tmp_path / "b").exists()  # a failed start leaves no debris
    wider.train.init_from = str(tmp_path / "nothing")
    with pytest.raises(UserError, match="neither a bundle nor a training workdir"):
        trainer.Trainer(wider, tmp_path / "b").train()
