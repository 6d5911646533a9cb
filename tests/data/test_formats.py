"""Episode readers: both of the authors' layouts, and a clear error for every bad input."""

from pathlib import Path

import numpy as np
import pytest

from teco_jax.data import formats
from tests.helpers.episodes import make_episode, write_episodes


def test_reads_npz_layout_with_extras(tmp_path):
    written = write_episodes(tmp_path, {"train": 3, "test": 1})
    got = list(formats.iter_episodes(tmp_path, "train", num_actions=6))
    assert [eid for eid, _ in got] == ["ep_0000.npz", "ep_0001.npz", "ep_0002.npz"]
    for (_, ep), ref in zip(got, written["train"]):
        assert set(ep) == set(ref)
        for k in ref:
            np.testing.assert_array_equal(ep[k], ref[k])
        assert ep["actions"].dtype == np.int32 and ep["pose"].dtype == np.float32


def test_reads_mp4_with_sibling_npz(tmp_path):
    import imageio.v2 as imageio

    t, size = 10, 32
    yy, xx = np.mgrid[:size, :size]
    video = np.stack([np.stack([(xx * 8 + 10 * i) % 256, yy * 8, np.full_like(xx, 128)], -1)
                      for i in range(t)]).astype(np.uint8)
    (tmp_path / "train" / "sub").mkdir(parents=True)
    path = tmp_path / "train" / "sub" / "clip.mp4"
    with imageio.get_writer(path, "ffmpeg", fps=10, quality=10, macro_block_size=1) as w:
        for frame in video:
            w.append_data(frame)
    np.savez(path.with_suffix(".npz"), actions=np.arange(t) % 6)
    [(eid, ep)] = list(formats.iter_episodes(tmp_path, "train", num_actions=6))
    assert eid == "sub/clip.mp4"
    assert ep["video"].shape == video.shape and ep["video"].dtype == np.uint8
    assert np.abs(ep["video"].astype(int) - video).mean() < 12  # lossy codec
    np.testing.assert_array_equal(ep["actions"], np.arange(t) % 6)


def _bad(tmp_path: Path, **arrays) -> Path:
    (tmp_path / "train").mkdir(exist_ok=True)
    path = tmp_path / "train" / "bad.npz"
    np.savez(path, **arrays)
    return path


GOOD = make_episode(np.random.default_rng(0))


@pytest.mark.parametrize("arrays, message", [
    ({"actions": GOOD["actions"]}, "no `video`"),
    ({"video": GOOD["video"]}, "no `actions`"),
    ({"video": GOOD["video"].astype(np.float32), "actions": GOOD["actions"]}, "must be uint8"),
    ({"video": GOOD["video"][..., 0], "actions": GOOD["actions"]}, "shape (T, H, W, 3)"),
    ({"video": GOOD["video"], "actions": GOOD["actions"][:-1]}, "11 actions for the 12 frames of `video`"),
    ({"video": GOOD["video"], "actions": GOOD["actions"][:, None]}, "`actions` must have shape (T,)"),
    ({"video": GOOD["video"], "actions": GOOD["actions"] + 0.5}, "must be integers"),
    ({"video": GOOD["video"], "actions": GOOD["actions"] + 6}, "out of range"),
    ({"video": GOOD["video"], "actions": GOOD["actions"] - 7}, "negative action"),
    ({"video": GOOD["video"], "actions": GOOD["actions"], "pose": GOOD["pose"][:, :2]}, "`pose` must have shape"),
])
def test_invalid_episode_names_file_and_problem(tmp_path, arrays, message):
    path = _bad(tmp_path, **arrays)
    with pytest.raises(formats.EpisodeError) as err:
        formats.read_episode(path, num_actions=6)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_file(tmp_path, damage):
    path = _bad(tmp_path, **GOOD)
    data = path.read_bytes()
    path.write_bytes(b"not a zip file at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(formats.EpisodeError, match="corrupt or truncated") as err:
        formats.read_episode(path)
    assert str(path) in str(err.value)


def test_skip_bad_reports_and_continues(tmp_path, capsys):
    write_episodes(tmp_path, {"train": 2})
    (tmp_path / "train" / "ep_0001.npz").write_bytes(b"junk")
    with pytest.raises(formats.EpisodeError, match="ep_0001.npz"):
        list(formats.iter_episodes(tmp_path, "train"))
    got = list(formats.iter_episodes(tmp_path, "train", skip_bad=True))
    assert [eid for eid, _ in got] == ["ep_0000.npz"]
    assert "skipping bad episode" in capsys.readouterr().out


def test_empty_or_missing_directories(tmp_path):
    with pytest.raises(formats.EpisodeError, match="no such directory"):
        formats.find_episodes(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(formats.EpisodeError, match="no episodes found"):
        formats.find_episodes(tmp_path, "train")


def test_unreadable_mp4_without_actions_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.mp4").write_bytes(b"")
    with pytest.raises(formats.EpisodeError, match="a.mp4: cannot decode video"):
        formats.read_episode(tmp_path / "train" / "a.mp4", num_actions=6)


def test_episode_errors_are_user_errors():
    from teco_jax.errors import UserError

    assert issubclass(formats.EpisodeError, UserError) and issubclass(formats.EpisodeError, ValueError)
