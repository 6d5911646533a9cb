"""model.memory.motion = "fit": fitted on the training data for a new run, taken from the stored
config for a resumed one (no data read), written into the config the run stores."""

import math

import ml_collections
import numpy as np
import pytest
from flax import nnx

from teco_jax.data import tfds_write
from teco_jax.errors import UserError
from teco_jax.tasks import teco as teco_task
from tests.helpers.configs import MEMORY
from tests.helpers.configs import teco_tiny_config as tiny_config

STEP, TURN = 0.25, 15.0  # action 0 steps forward, action 4 turns left, the others stand still


def _episode(rng, length=8):
    actions = rng.choice([0, 4, 5], size=length).astype(np.int32)
    pose, x, y, th = [], 0.0, 0.0, 0.0
    for i, a in enumerate(actions):
        if i > 0 and a == 0:
            x, y = x + STEP * math.cos(th), y + STEP * math.sin(th)
        if i > 0 and a == 4:
            th += math.radians(TURN)
        pose.append((x, y, th))
    return {"codes": rng.integers(0, 32, (length, 8, 8)).astype(np.int16), "actions": actions,
            "pose": np.asarray(pose, np.float32)}


@pytest.fixture(scope="module")
def codes_with_poses(tmp_path_factory):
    root = tmp_path_factory.mktemp("codes")
    rng = np.random.default_rng(0)
    eps = lambda n: iter([(f"e{i}", _episode(rng)) for i in range(n)])  # noqa: E731
    tfds_write.write_dataset(root, "codes_poses", {"train": eps(12), "test": eps(2)}, num_actions=6, vocab_size=32)
    return root


def _task(data_dir):
    config = tiny_config(memory={**MEMORY, "motion": "fit"})
    config.unlock()
    config.data.dir = str(data_dir)
    return teco_task.TECOTask(config)


def test_a_new_run_fits_the_motion_on_its_data(codes_with_poses, capsys):
    task = _task(codes_with_poses)
    task.resolve(None)
    motion = task.config.model.memory.motion
    assert motion.startswith("turn=0,0,0,0,15,0;forward=0.25,0,0,0,0,0;"), motion
    assert "fitted on 12 training clips" in capsys.readouterr().out
    task.build_model(nnx.Rngs(0))  # the fitted table builds a runnable memory


def test_a_resumed_run_takes_its_stored_motion_without_reading_data(codes_with_poses, monkeypatch):
    def no_fit(config, max_clips=256):
        raise AssertionError("a resumed run must not read its data to fit the motion")

    monkeypatch.setattr(teco_task, "fit_motion", no_fit)
    task = _task(codes_with_poses)
    stored = ml_collections.ConfigDict({"model": {"memory": {"motion": MEMORY["motion"]}}})
    task.resolve(stored)
    assert task.config.model.memory.motion == MEMORY["motion"]


def test_a_dataset_without_poses_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    eps = iter([(f"e{i}", {k: v for k, v in _episode(rng).items() if k != "pose"}) for i in range(3)])
    tfds_write.write_dataset(tmp_path, "codes_only", {"train": eps}, num_actions=6, vocab_size=32)
    with pytest.raises(UserError, match="has no `pose` feature"):
        _task(tmp_path).resolve(None)


def test_without_a_dataset_the_motion_stays_unfitted_and_the_model_refuses_to_run(tmp_path):
    task = _task(tmp_path / "nowhere")
    task.resolve(None)
    assert task.config.model.memory.motion == "fit"
    model = task.build_model(nnx.Rngs(0))
    with pytest.raises(UserError, match="unfitted config"):
        model.earlier_frames(np.zeros((1, 6), np.int32), np.zeros((1, 6, 8, 8, 8), np.float32))
