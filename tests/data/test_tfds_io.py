"""Episode files -> TFDS array_record -> tfds.data_source gives back the same arrays."""

import numpy as np
import pytest

from teco_jax.data import build, formats, tfds_io
from tests.conftest import write_episodes


def test_round_trip_matches_npz_source(episode_dir, tfds_dir):
    _, written = episode_dir
    meta, sources = tfds_io.load(tfds_dir)
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


def test_inconsistent_episode_is_named(tmp_path):
    write_episodes(tmp_path / "src", {"train": 2})
    write_episodes(tmp_path / "other", {"train": 1}, size=16)
    (tmp_path / "other" / "train" / "ep_0000.npz").rename(tmp_path / "src" / "train" / "ep_0009.npz")
    with pytest.raises(formats.EpisodeError, match=r"train/ep_0009.npz: `video` has shape"):
        tfds_io.build_from_episodes(tmp_path / "src", tmp_path / "out", name="x")


def test_refuses_to_overwrite_and_finds_nothing(tmp_path, tfds_dir):
    with pytest.raises(FileExistsError):
        tfds_io.write_dataset(tfds_dir, "toy", {"train": iter([])})
    with pytest.raises(FileNotFoundError, match="no teco_jax TFDS dataset"):
        tfds_io.load(tmp_path)


def test_cli_reports_bad_input(tmp_path, capsys):
    write_episodes(tmp_path / "src", {"train": 2}, num_actions=9)
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--num_actions", "6"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 0
