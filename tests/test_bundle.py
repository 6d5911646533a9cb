"""Parameter-only bundles (teco_jax.bundle): export from workdirs, load with nothing else present,
same rollouts as the workdirs, clear errors on broken bundles. The tiny untrained runs are the
`runs` and `wm` fixtures of tests/conftest.py."""

import json
import shutil

import numpy as np
import pytest

from teco_jax import bundle
from teco_jax.world_model import WorldModel
from tests.helpers.runs import context


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "demo"
    info = bundle.export(runs[0] / "teco", out)
    return out, info


def test_bundle_loads_alone_and_rolls_out_like_the_workdir(runs, wm, exported, tmp_path):
    out, info = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle.FILES)
    assert info["teco_step"] == 1 and info["bytes"] < 10 * 2**20
    alone = tmp_path / "elsewhere" / "demo"  # moved away from the workdirs, which are then deleted
    shutil.copytree(out, alone)
    moved = runs[0].with_name(runs[0].name + "_gone")
    runs[0].rename(moved)
    try:
        loaded = WorldModel.load(alone)
    finally:
        moved.rename(runs[0])
    assert loaded.step == 1 and loaded.window == wm.window and loaded.frame_shape == wm.frame_shape
    assert loaded.config.model.vqgan_dir == ""
    video = context(runs[1], 5)
    actions = np.stack([ep["actions"][:5] for ep in runs[1][:2]])
    np.testing.assert_array_equal(loaded.rollout(video[:, :2], actions, 5, key=0),
                                  wm.rollout(video[:, :2], actions, 5, key=0))


def test_broken_bundles_are_clear_errors(runs, exported, tmp_path):
    out, _ = exported
    with pytest.raises(FileExistsError, match="already exists"):
        bundle.export(runs[0] / "teco", out)
    missing = tmp_path / "missing"
    shutil.copytree(out, missing)
    (missing / "vqgan.json").unlink()
    with pytest.raises(FileNotFoundError, match="vqgan.json is missing"):
        WorldModel.load(missing)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(out, corrupt)
    (corrupt / "teco.msgpack").write_bytes((out / "teco.msgpack").read_bytes()[:100])
    with pytest.raises(ValueError, match="teco.msgpack"):
        WorldModel.load(corrupt)
    other = tmp_path / "other"  # a config that builds a different model than the parameters
    shutil.copytree(out, other)
    cfg = json.loads((other / "teco.json").read_text())
    cfg["model"]["embedding_dim"] += 8
    (other / "teco.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not fit"):
        WorldModel.load(other)
    with pytest.raises(ValueError, match="is a bundle"):
        WorldModel.load(out, step=3)


def test_a_bundle_or_its_workdir_can_start_a_new_run(runs, exported):
    import jax

    from teco_jax import checkpoint, loading

    out, _ = exported
    config = checkpoint.load_config(runs[0] / "teco")
    from_bundle = loading.initial_params(out, config)
    from_workdir = loading.initial_params(runs[0] / "teco", config)
    pairs = zip(jax.tree.leaves(from_bundle), jax.tree.leaves(from_workdir))
    assert all(np.array_equal(a, b) for a, b in pairs) and len(jax.tree.leaves(from_bundle)) > 10
    vq_config = checkpoint.load_config(runs[0] / "vqgan")
    with pytest.raises(ValueError, match="a bundle holds no 'vqgan' training parameters"):
        loading.initial_params(out, vq_config)
    with pytest.raises(ValueError, match="a 'teco' workdir cannot start a 'vqgan' model"):
        loading.initial_params(runs[0] / "teco", vq_config)
