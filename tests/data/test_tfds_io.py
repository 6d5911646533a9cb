"""Episode files -> TFDS array_record -> tfds.data_source gives back the same arrays."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from teco_jax.data import build, formats, pipeline, tfds_meta, tfds_read, tfds_write
from teco_jax.errors import UserError
from tests.helpers.episodes import write_episodes


def test_round_trip_matches_npz_source(episode_dir, tfds_dir):
    _, written = episode_dir
    meta, sources = tfds_read.load(tfds_dir)
    assert meta.num_examples == {"train": 12, "test": 4}
    assert (meta.frame_feature, meta.frame_shape, meta.num_actions) == ("video", (8, 8, 3), 6)
    assert (meta.min_length, meta.max_length, meta.extras) == (12, 12, ("layout",))
    for split, episodes in written.items():
        assert len(sources[split]) == len(episodes)
        for i, ref in enumerate(episodes):
            got = sources[split][i]
            assert got["episode_id"] in (f"ep_{i:04d}.npz", f"ep_{i:04d}.npz".encode())
            for k, v in ref.items():
                assert got[k].dtype == v.dtype
                np.testing.assert_array_equal(got[k], v)


def test_large_splits_stream_into_several_shards_without_tensorflow(tmp_path, monkeypatch):
    """A split bigger than a shard is written as several shards, in order. TFDS's own builder
    spilled splits over 1 GB to disk through TensorFlow (absent here): with its in-memory
    limit at 0 that path would fail, this one does not use it."""
    from tensorflow_datasets.core import shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
    monkeypatch.setattr(tfds_write, "SHARD_BYTES", 3 * 12 * 8 * 8 * 3)  # about 3 episodes of 12 8x8 frames
    written = write_episodes(tmp_path / "src", {"train": 10, "test": 2})
    tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "out", name="big")
    shards = sorted(p.name for p in (tmp_path / "out" / "big" / tfds_meta.VERSION).glob("big-train.*"))
    assert len(shards) >= 3 and all(p.endswith(f"-of-{len(shards):05d}") for p in shards)
    _, sources = tfds_read.load(tmp_path / "out")
    for i, ref in enumerate(written["train"]):
        np.testing.assert_array_equal(sources["train"][i]["video"], ref["video"])
    assert not list((tmp_path / "out" / "big").glob("*.incomplete"))


def test_a_dataset_named_like_a_registered_tfds_dataset_loads(tmp_path):
    """`data/dmlab` gives the name "dmlab", which TFDS's registry also holds (its DMLab set):
    loading must read the files in the directory, not look the name up."""
    written = write_episodes(tmp_path / "dmlab", {"train": 2})
    tfds_write.build_from_episodes(tmp_path / "dmlab", tmp_path / "out")
    meta, sources = tfds_read.load(tmp_path / "out")
    assert meta.name == "dmlab"
    np.testing.assert_array_equal(sources["train"][1]["video"], written["train"][1]["video"])


def test_inconsistent_episode_is_named(tmp_path):
    write_episodes(tmp_path / "src", {"train": 2})
    write_episodes(tmp_path / "other", {"train": 1}, size=16)
    (tmp_path / "other" / "train" / "ep_0000.npz").rename(tmp_path / "src" / "train" / "ep_0009.npz")
    with pytest.raises(formats.EpisodeError, match=r"train/ep_0009.npz: `video` has shape"):
        tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "out", name="x")
    assert not (tmp_path / "out" / "x").exists() or not list((tmp_path / "out" / "x").iterdir())  # no debris


def test_refuses_to_overwrite_and_finds_nothing(tmp_path, tfds_dir):
    with pytest.raises(FileExistsError):
        tfds_write.write_dataset(tfds_dir, "toy", {"train": iter([])})
    with pytest.raises(FileNotFoundError, match="no teco_jax TFDS dataset"):
        tfds_read.load(tmp_path)


def test_cli_reports_bad_input(tmp_path, capsys):
    write_episodes(tmp_path / "src", {"train": 2}, num_actions=9)
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--num_actions", "6"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 0


# ------------------------------------------------------------------ damaged files

def _shard(data_dir, split="train"):
    (path,) = (data_dir / "toy" / tfds_meta.VERSION).glob(f"toy-{split}.array_record-*")
    return path


def test_truncated_array_record_is_named_when_opened(tfds_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tfds_dir, data)
    shard = _shard(data)
    os.truncate(shard, shard.stat().st_size // 2)
    for open_it in (lambda: tfds_read.load(data),
                    lambda: pipeline.make_dataset(data, "test", seq_len=4, batch_size=2)):
        with pytest.raises(UserError) as e:
            open_it()
        message = str(e.value)
        assert message.startswith(f"{shard}: truncated or corrupt array_record file") and "\n" not in message
        assert f"delete {data / 'toy' / tfds_meta.VERSION} and rebuild the dataset: python -m teco_jax.data.build" \
               in message


def test_damaged_record_is_named_when_read(tfds_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tfds_dir, data)
    shard = _shard(data)
    raw = bytearray(shard.read_bytes())
    raw[2000:30000] = bytes(28000)  # the first records' bytes; the index at the end survives
    shard.write_bytes(bytes(raw))
    _, sources = tfds_read.load(data)
    with pytest.raises(UserError, match=rf"^{re.escape(str(shard))}: record 0 cannot be read, the file is corrupt"):
        sources["train"][0]
    ds, _ = pipeline.make_dataset(data, "train", seq_len=4, batch_size=2, shuffle=False, num_epochs=1)
    with pytest.raises(UserError, match=re.escape(str(shard))):
        list(ds)


# ------------------------------------------------------------------ action sets

MAZE_ACTIONS = ["forward", "backward", "strafe_left", "strafe_right", "turn_left", "turn_right"]


def _with_meta(root, **meta):
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_build_refuses_actions_outside_meta_json(tmp_path, capsys):
    write_episodes(tmp_path / "src", {"train": 2}, num_actions=9)
    _with_meta(tmp_path / "src", num_actions=6, action_names=MAZE_ACTIONS)
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path / 'src' / 'train' / 'ep_0000.npz'))}: action [6-8] out of "
                        rf"range: the action set has 6 actions \(0..5, num_actions from "
                        rf"{re.escape(str(tmp_path / 'src' / 'meta.json'))}\)\n", err)


def test_build_records_action_names_and_inferred_counts(tmp_path, capsys):
    write_episodes(tmp_path / "named", {"train": 2}, num_actions=6)
    _with_meta(tmp_path / "named", num_actions=6, action_names=MAZE_ACTIONS)
    assert build.main(["--src", str(tmp_path / "named"), "--out", str(tmp_path / "a")]) == 0
    meta = tfds_meta.load_meta(tmp_path / "a")
    assert (meta.num_actions, meta.action_names, meta.num_actions_inferred) == (6, tuple(MAZE_ACTIONS), False)
    assert "note:" not in capsys.readouterr().out

    written = write_episodes(tmp_path / "bare", {"train": 2, "test": 1}, num_actions=5)
    assert build.main(["--src", str(tmp_path / "bare"), "--out", str(tmp_path / "b")]) == 0
    top = max(int(ep["actions"].max()) for eps in written.values() for ep in eps)
    assert f"note: {tmp_path / 'bare'} has no meta.json naming its actions: num_actions={top + 1} inferred" \
           in capsys.readouterr().out
    meta = tfds_meta.load_meta(tmp_path / "b")
    assert (meta.num_actions, meta.action_names, meta.num_actions_inferred) == (top + 1, (), True)


def test_old_metadata_without_action_names_loads(tfds_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tfds_dir, data)
    path = data / "toy" / tfds_meta.VERSION / tfds_meta.META_FILE
    raw = json.loads(path.read_text())
    for key in ("action_names", "num_actions_inferred"):
        raw.pop(key)
    path.write_text(json.dumps(raw))
    meta = tfds_meta.load_meta(data)
    assert (meta.num_actions, meta.action_names, meta.num_actions_inferred) == (6, (), False)


def test_num_actions_flag_that_contradicts_meta_json(tmp_path, capsys):
    write_episodes(tmp_path / "src", {"train": 1})
    _with_meta(tmp_path / "src", num_actions=6, action_names=MAZE_ACTIONS)
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--num_actions", "7"]) == 1
    assert capsys.readouterr().err == (f"error: --num_actions 7 contradicts {tmp_path / 'src' / 'meta.json'} "
                                       f"(num_actions=6); drop the flag or fix meta.json\n")


def _meta(**kw):
    base = dict(name="toy", frame_feature="video", frame_shape=(8, 8, 3), num_actions=6, min_length=12,
                max_length=12, num_examples={"train": 1})
    return tfds_meta.DatasetMeta(**{**base, **kw})


def test_check_actions():
    named = _meta(action_names=tuple(MAZE_ACTIONS))
    tfds_meta.check_actions(named, 6, "config.model.num_actions", tuple(MAZE_ACTIONS))
    with pytest.raises(UserError) as e:
        tfds_meta.check_actions(named, 9, "config.model.num_actions", data_dir="data/maze")
    assert str(e.value) == ("data/maze: the dataset has 6 actions (forward, backward, strafe_left, strafe_right, "
                            "turn_left, turn_right), but config.model.num_actions is 9: the model and its data must "
                            "share one action set")
    with pytest.raises(UserError, match=r"but model.num_actions of runs/x is 6 \(a, b, c, d, e, f\)"):
        tfds_meta.check_actions(named, 6, "model.num_actions of runs/x", tuple("abcdef"))
    tfds_meta.check_actions(_meta(num_actions=5, num_actions_inferred=True), 6, "n")  # a lower bound: it fits
    with pytest.raises(UserError, match=r"toy: the dataset has 7 actions \(inferred from the data: largest "
                                        r"action \+ 1\), but n is 6"):
        tfds_meta.check_actions(_meta(num_actions=7, num_actions_inferred=True), 6, "n")
    tfds_meta.check_actions(_meta(num_actions=None), 6, "n")  # nothing known


def test_encode_carries_the_action_set_over(tmp_path, monkeypatch):
    import ml_collections

    from teco_jax import encode

    write_episodes(tmp_path / "src", {"train": 2}, num_actions=6)
    _with_meta(tmp_path / "src", num_actions=6, action_names=MAZE_ACTIONS)
    tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "frames")
    vq_config = ml_collections.ConfigDict({"model": {"codebook_size": 16}})
    monkeypatch.setattr(encode, "load_vqgan", lambda workdir: (None, vq_config))
    monkeypatch.setattr(encode, "Encoder", lambda vqgan, chunk: lambda video: np.zeros((len(video), 2, 2), np.int16))
    for data, out in ((tmp_path / "frames", tmp_path / "c1"), (tmp_path / "src", tmp_path / "c2")):
        meta = encode.encode_dataset(tmp_path / "vqgan", data, out)
        assert (meta.frame_feature, meta.num_actions, meta.action_names) == ("codes", 6, tuple(MAZE_ACTIONS))
