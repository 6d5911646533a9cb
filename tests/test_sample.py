"""WorldModel (checkpoint + VQ-GAN in one call, clear errors) and the sampling CLI, on tiny
untrained checkpoints the tests write themselves (the `runs` and `wm` fixtures of tests/conftest.py)."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from teco_jax import checkpoint, sample
from teco_jax.data import tfds_meta, tfds_write
from teco_jax.world_model import WorldModel
from tests.helpers.configs import teco_tiny_config
from tests.helpers.episodes import write_episodes
from tests.helpers.runs import context, nine_action_frames

SEQ_LEN = 6  # TECO's window in frames (tiny_config)


def test_load_encode_decode_rollout(runs, wm):
    _, episodes = runs
    assert wm.window == SEQ_LEN and wm.frame_shape == (32, 32, 3)
    video = context(episodes, 5)  # shapes as in the CLI test below, which reuses the compiled programs
    codes = wm.encode(video[:, :2])
    assert codes.shape == (2, 2, 16, 16) and codes.dtype == np.int32 and codes.max() < 16
    frames = wm.decode(codes)
    assert frames.shape == (2, 2, 32, 32, 3) and frames.dtype == np.uint8
    actions = np.stack([ep["actions"][:5] for ep in episodes[:2]])
    out = wm.rollout(video[:, :2], actions, 5, key=0)
    assert out.shape == (2, 5, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :2], video[:, :2])  # the context comes back unchanged
    np.testing.assert_array_equal(wm.rollout(video[:, :2], actions, 5, key=0), out)
    gen = wm.rollout_codes(codes, actions, 5, key=0)
    assert gen.shape == (2, 5, 16, 16)
    np.testing.assert_array_equal(gen[:, :2], codes)
    np.testing.assert_array_equal(wm.decode(gen[:, 2:]), out[:, 2:])
    assert not np.array_equal(wm.rollout_codes(codes, actions, 5, key=1), gen)
    assert not np.array_equal(wm.rollout_codes(codes, None, 5, key=0), gen)  # unconditional


def test_missing_checkpoint_is_a_clear_error(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WorldModel.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        WorldModel.load(tmp_path)
    shutil.copy(runs[0] / "teco" / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no checkpoint in checkpoint directory"):
        WorldModel.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 7; it has steps \\[1\\]"):
        WorldModel.load(runs[0] / "teco", step=7)


def test_config_that_does_not_match_its_vqgan(runs, tmp_path):
    work = tmp_path / "teco"
    shutil.copytree(runs[0] / "teco", work)
    config = json.loads((work / "config.json").read_text())
    config["model"].update(vq_vocab=32, vq_grid=[8, 8])
    (work / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"vq_vocab=32 but the VQ-GAN's codebook_size is 16; "
                                         r"model.vq_grid=\(8, 8\) but the VQ-GAN's code grid is \(16, 16\)"):
        WorldModel.load(work)
    config["model"].update(vq_vocab=16, vq_grid=[16, 16], vqgan_dir=str(runs[0] / "teco"))
    (work / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="holds a 'teco' run, not a VQ-GAN"):
        WorldModel.load(work)


def test_rollout_argument_errors(runs, wm):
    video = context(runs[1], 8)
    with pytest.raises(ValueError, match="7 context frames are more than the model's window of data.seq_len=6"):
        wm.rollout(video[:, :7], None, 8)
    bad = np.zeros((2, 8), np.int32)
    bad[1, 5] = 6
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 6\) \(num_actions=6\); got \[6\]"):
        wm.rollout(video[:, :2], bad, 8)
    with pytest.raises(ValueError, match=r"actions must have shape \(B, L\) = \(2, 8\)"):
        wm.rollout(video[:, :2], bad[:, :5], 8)
    with pytest.raises(ValueError, match="must be uint8"):
        wm.rollout(video[:, :2].astype(np.float32), None, 8)


@pytest.mark.filterwarnings("ignore:os.fork")  # imageio starts ffmpeg by fork + exec
def test_cli_writes_the_authors_layout_and_videos(runs, tmp_path, capsys):
    tmp, episodes = runs
    out = tmp_path / "samples_action_2"
    argv = ["--checkpoint", str(tmp / "teco"), "--data", str(tmp / "frames"), "--context", "2", "--length", "5",
            "--num", "3", "--batch_size", "2", "--out", str(out), "--seed", "3"]
    assert sample.main(argv) == 0
    assert "frames/s" in capsys.readouterr().out
    files = sorted(p.name for p in out.iterdir())
    assert files == ["data_0.npz", "data_1.npz"] + [f"video_{i:04d}.{e}" for i in range(3) for e in ("gif", "mp4")]
    real = np.concatenate([np.load(out / f"data_{i}.npz")["real"] for i in range(2)])
    fake = np.concatenate([np.load(out / f"data_{i}.npz")["fake"] for i in range(2)])
    assert real.shape == fake.shape == (3, 5, 32, 32, 3) and fake.dtype == np.uint8
    np.testing.assert_array_equal(real, np.stack([ep["video"][:5] for ep in episodes]))
    np.testing.assert_array_equal(fake[:, :2], real[:, :2])
    gif = iio.imread(out / "video_0001.gif", index=None)[..., :3].astype(int)
    assert gif.shape == (5, 36, 3 * 36, 3)  # three framed 32x32 panels (colors quantized)
    assert np.abs(gif[1, 0, 0] - sample.GREEN).max() < 40 and np.abs(gif[2, 0, 0] - sample.RED).max() < 40
    assert len(iio.imread(out / "video_0002.mp4", index=None)) == 5


def test_comparison_panels():
    rng = np.random.default_rng(0)
    real, fake = rng.integers(0, 256, (2, 3, 4, 6, 3), dtype=np.uint8)
    row = sample.comparison(real, fake, context=1)
    assert row.shape == (3, 8, 30, 3)
    for t in range(3):
        np.testing.assert_array_equal(row[t, 2:6, 2:8], real[t])
        np.testing.assert_array_equal(row[t, 2:6, 12:18], fake[t])
        np.testing.assert_array_equal(row[t, 2:6, 22:28], np.abs(real[t].astype(int) - fake[t]))
        color = sample.GREEN if t < 1 else sample.RED
        for panel in range(3):
            np.testing.assert_array_equal(row[t, :, 10 * panel], np.broadcast_to(color, (8, 3)))


def test_cli_errors_and_help(runs, tmp_path, capsys):
    tmp, _ = runs
    base = ["--checkpoint", str(tmp / "teco"), "--out", str(tmp_path / "s"), "--num", "1"]
    assert sample.main(base + ["--data", str(tmp / "frames"), "--context", "7", "--length", "8"]) == 1
    assert "--context 7 is more than the model's window" in capsys.readouterr().err
    assert sample.main(base + ["--data", str(tmp / "codes"), "--context", "2", "--length", "4"]) == 1
    assert "not a code dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        sample.main(["--help"])
    assert exit_.value.code == 0 and "--no-actions" in capsys.readouterr().out


def test_cli_refuses_a_dataset_with_another_action_set(tmp_path, capsys):
    """Checked from the checkpoint's config (workdir or bundle) before the model is loaded."""
    data = nine_action_frames(tmp_path)
    checkpoint.save_config(tmp_path / "teco", teco_tiny_config())  # no checkpoint: loading it would fail
    capsys.readouterr()  # TFDS's progress bars
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "teco.json").write_text(teco_tiny_config().to_json())
    for model in (tmp_path / "teco", tmp_path / "bundle"):
        argv = ["--checkpoint", str(model), "--data", str(data), "--out", str(tmp_path / "out"),
                "--context", "2", "--length", "4", "--num", "1"]
        assert sample.main(argv) == 1
        assert capsys.readouterr().err == (
            f"error: {data}: the dataset has 9 actions (a, b, c, d, e, f, g, h, i), but model.num_actions of "
            f"{model} is 6: the model and its data must share one action set\n")
    assert not (tmp_path / "out").exists()


def test_cli_names_a_truncated_dataset_file(tmp_path, capsys):
    write_episodes(tmp_path / "src", {"test": 2}, size=32, length=8)
    tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "frames", name="frames32", num_actions=6)
    (shard,) = (tmp_path / "frames" / "frames32" / tfds_meta.VERSION).glob("*-test.array_record-*")
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    checkpoint.save_config(tmp_path / "teco", teco_tiny_config())
    capsys.readouterr()  # TFDS's progress bars
    argv = ["--checkpoint", str(tmp_path / "teco"), "--data", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
            "--context", "2", "--length", "4", "--num", "1"]
    assert sample.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {shard}: truncated or corrupt array_record file") and err.count("\n") == 1
    assert "rebuild the dataset: python -m teco_jax.data.build" in err and not (tmp_path / "out").exists()
