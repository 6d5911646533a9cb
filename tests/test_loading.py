"""Loading for inference: parameters only, from the checkpoint the Trainer wrote, no Trainer."""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from teco_jax import checkpoint, loading, trainer
from tests.helpers.toy_task import toy_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tfds_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    state = trainer.Trainer(toy_config(tfds_dir, num_steps=4, ckpt_every=2), run).train()
    return run, state


def test_loads_the_parameters_the_trainer_saved(tfds_dir, trained):
    run, state = trained
    model, config = loading.load_model(run)
    assert config.task == "toy"
    got = jax.tree.leaves(nnx.state(model, nnx.Param))
    want = jax.tree.leaves(state.params)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    earlier, _ = loading.load_model(run, step=2)  # an older step differs
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(nnx.state(earlier, nnx.Param)), want))


def test_a_relative_workdir_path_loads(trained, monkeypatch):
    """orbax reads checkpoints from absolute paths only: a workdir given relative to the cwd
    (as on a command line) must load all the same."""
    run = Path(trained[0])
    monkeypatch.chdir(run.parent)
    model, _ = loading.load_model(run.name)
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(trained[1].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_missing_step_or_a_mismatched_config_is_named(tfds_dir, trained):
    run, _ = trained
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 3; it has \[2, 4\]"):
        loading.load_model(run, step=3)
    wider = trainer.config_replace(toy_config(tfds_dir), **{"model.width": 16})
    with pytest.raises(checkpoint.CheckpointMismatchError, match="params/enc/bias/value: checkpoint \\(8,\\), "
                                                                 "model \\(16,\\)"):
        loading.load_model(run, config=wider)


def test_inference_imports_no_trainer():
    """WorldModel, the sampling CLI, encoding and the task registry load without the training loop."""
    code = ("import sys\n"
            "import teco_jax.loading, teco_jax.world_model, teco_jax.sample, teco_jax.encode\n"
            "import teco_jax.diffusion.world_model\n"
            "from teco_jax.tasks import base\n"
            "[base.get(t) for t in ('teco', 'vqgan', 'diffusion')]\n"
            "print(sorted(m for m in ('teco_jax.trainer', 'teco_jax.optim', 'eval.benchmark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
