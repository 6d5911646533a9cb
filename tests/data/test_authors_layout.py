"""Files in the TECO authors' layout are read as their loader reads them; build --splits;
encoding shared by several processes."""

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from teco_jax.data import build, formats, tfds_meta, tfds_read
from teco_jax.errors import UserError
from tests.helpers.episodes import make_episode

CUT_NOTE = "actions longer than the video are cut to its length, as the TECO authors' loader does"
NULL_NOTE = "have no sibling .npz"


def write_npz(path: Path, length: int = 12, extra_actions: int = 0, seed: int = 0) -> dict:
    """An authors'-layout npz episode whose `actions` run `extra_actions` past its video."""
    ep = make_episode(np.random.default_rng(seed), length=length, size=16)
    ep["actions"] = np.concatenate([ep["actions"], np.full(extra_actions, 9, np.int32)])
    del ep["pose"], ep["layout"]  # the authors' files hold only these two arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **ep)
    return ep


def write_mp4(path: Path, length: int = 6, actions: np.ndarray | None = None) -> None:
    """A small mp4 (16x16 frames), with a sibling npz holding `actions` unless None."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:16, :16]
    with imageio.get_writer(path, "ffmpeg", fps=10, quality=10, macro_block_size=1) as writer:
        for i in range(length):
            writer.append_data(np.stack([(xx * 16 + 20 * i) % 256, yy * 16, np.full_like(xx, 128)], -1).astype(np.uint8))
    if actions is not None:
        np.savez(path.with_suffix(".npz"), actions=actions)


def authors_root(root: Path) -> Path:
    """ROOT/train: 3 npz (one with 3 actions too many); ROOT/test: 3 mp4, one with a sibling npz
    holding 2 actions too many, two without; ROOT/meta.json: 6 actions."""
    for i, extra in enumerate((0, 3, 0)):
        write_npz(root / "train" / f"ep_{i}.npz", extra_actions=extra, seed=i)
    write_mp4(root / "test" / "a.mp4", actions=np.array([1, 2, 3, 4, 5, 0, 9, 9]))
    write_mp4(root / "test" / "b.mp4", length=5)
    write_mp4(root / "test" / "sub" / "c.mp4", length=7)
    (root / "meta.json").write_text(json.dumps({"num_actions": 6}))
    return root


def note_lines(out: str, text: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


def test_actions_longer_than_the_video_are_cut_with_one_note(tmp_path, capsys):
    written = [write_npz(tmp_path / "train" / f"ep_{i}.npz", extra_actions=extra, seed=i)
               for i, extra in enumerate((3, 0, 1))]
    got = dict(formats.iter_episodes(tmp_path, "train", num_actions=6))
    for i, ref in enumerate(written):
        ep = got[f"ep_{i}.npz"]
        assert len(ep["actions"]) == len(ep["video"]) == 12  # the cut-off 9s are not checked against 6 actions
        np.testing.assert_array_equal(ep["actions"], ref["actions"][:12])
    [note] = note_lines(capsys.readouterr().out, CUT_NOTE)
    assert note.startswith("note: 2 file(s) have more actions than frames") and "ep_0.npz" in note

    formats.read_episode(tmp_path / "train" / "ep_2.npz")  # a single read reports its own cut
    assert len(note_lines(capsys.readouterr().out, "note: 1 file(s)")) == 1


def test_actions_shorter_than_the_video_are_an_error(tmp_path):
    path = tmp_path / "train" / "short.npz"
    ep = write_npz(path)
    np.savez(path, video=ep["video"], actions=ep["actions"][:10])
    with pytest.raises(formats.EpisodeError) as err:
        list(formats.iter_episodes(tmp_path, "train", num_actions=6))
    assert str(err.value) == f"{path}: 10 actions for the 12 frames of `video`: every frame needs its action"


def test_mp4s_with_and_without_sibling_npz(tmp_path, capsys):
    root = authors_root(tmp_path)
    got = dict(formats.iter_episodes(root, "test", num_actions=6))
    assert sorted(got) == ["a.mp4", "b.mp4", "sub/c.mp4"]
    np.testing.assert_array_equal(got["a.mp4"]["actions"], [1, 2, 3, 4, 5, 0])  # its npz, cut to 6 frames
    for eid, length in (("b.mp4", 5), ("sub/c.mp4", 7)):
        ep = got[eid]
        assert ep["video"].shape == (length, 16, 16, 3) and ep["actions"].dtype == np.int32
        np.testing.assert_array_equal(ep["actions"], np.full(length, 6))  # the null action: index num_actions
    out = capsys.readouterr().out
    [null_note] = note_lines(out, NULL_NOTE)
    assert null_note.startswith("note: 2 mp4 file(s) have no sibling .npz") and "null action 6" in null_note
    assert len(note_lines(out, CUT_NOTE)) == 1


def test_mp4_without_npz_needs_a_known_action_count(tmp_path):
    write_mp4(tmp_path / "test" / "b.mp4")
    with pytest.raises(formats.EpisodeError) as err:
        formats.read_episode(tmp_path / "test" / "b.mp4")
    assert str(err.value).startswith(f"{tmp_path / 'test' / 'b.mp4'}: no sibling b.npz")
    assert "the action count is unknown: pass --num_actions N" in str(err.value)


def test_build_reads_the_authors_layout_and_notes_once_per_build(tmp_path, capsys):
    root = authors_root(tmp_path / "src")
    assert build.main(["--src", str(root), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    [cut] = note_lines(out, CUT_NOTE)  # one file in train, one in test: one note
    assert cut.startswith("note: 2 file(s)")
    assert len(note_lines(out, NULL_NOTE)) == 1
    meta, sources = tfds_read.load(tmp_path / "out")
    assert meta.num_actions == 6 and meta.num_examples == {"train": 3, "test": 3}
    episodes = {_text(sources["test"][i]["episode_id"]): sources["test"][i] for i in range(3)}
    np.testing.assert_array_equal(episodes["b.mp4"]["actions"], np.full(5, 6))
    assert [len(sources["train"][i]["actions"]) for i in range(3)] == [12, 12, 12]


@pytest.mark.parametrize("flags, splits", [
    (["--splits", "test"], {"test": 3}),
    (["--splits", "train,test"], {"train": 3, "test": 3}),
    (["--splits", "test", "--splits", "train"], {"test": 3, "train": 3}),
    ([], {"train": 3, "test": 3}),
])
def test_build_converts_the_listed_splits(tmp_path, flags, splits):
    root = authors_root(tmp_path / "src")
    assert build.main(["--src", str(root), "--out", str(tmp_path / "out")] + flags) == 0
    meta, sources = tfds_read.load(tmp_path / "out")
    assert meta.num_examples == splits and set(sources) == set(splits)


def test_build_refuses_a_split_that_does_not_exist(tmp_path, capsys):
    write_npz(tmp_path / "src" / "train" / "ep_0.npz")
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--splits", "train,val"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'src'}: no split 'val'" in err and "splits found: train" in err
    assert not (tmp_path / "out").exists()
    assert build.parse_splits([" test, train", "test"]) == ["test", "train"] and build.parse_splits(None) is None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def fake_codes(video: np.ndarray) -> np.ndarray:
    """The stand-in VQ-GAN: a 2x2 code grid read off each frame."""
    return (video[:, ::8, ::8, 0] // 16).astype(np.int16)


@pytest.fixture
def fake_vqgan(monkeypatch):
    import ml_collections

    from teco_jax import encode

    config = ml_collections.ConfigDict({"model": {"codebook_size": 16}})
    monkeypatch.setattr(encode, "load_vqgan", lambda workdir: (None, config))
    monkeypatch.setattr(encode, "Encoder", lambda vqgan, chunk: fake_codes)
    return encode


def _by_id(data_dir: Path) -> tuple[tfds_meta.DatasetMeta, dict[str, Counter], dict[tuple[str, str], dict]]:
    """A dataset's metadata, its episode ids counted per split, and its episodes by (split, id)."""
    meta, sources = tfds_read.load(data_dir)
    counts = {s: Counter(_text(src[i]["episode_id"]) for i in range(len(src))) for s, src in sources.items()}
    episodes = {(s, _text(src[i]["episode_id"])): src[i] for s, src in sources.items() for i in range(len(src))}
    return meta, counts, episodes


def test_encode_shared_by_three_processes_is_one_dataset(tmp_path, fake_vqgan, monkeypatch, capsys):
    encode = fake_vqgan
    root = authors_root(tmp_path / "src")
    for i in range(3, 5):
        write_npz(root / "train" / f"ep_{i}.npz", seed=i)
    single = encode.encode_dataset(tmp_path / "vqgan", root, tmp_path / "one")
    monkeypatch.setattr(encode.Parts, "WAIT_S", 0)
    with pytest.raises(UserError, match=r"processes \[1, 2\] of 3 did not finish their share"):
        encode.encode_dataset(tmp_path / "vqgan", root, tmp_path / "three", process_index=0, process_count=3)
    # test/ has 3 episodes, train/ 5: each process has some of both; process 0 runs again and merges
    assert encode.encode_dataset(tmp_path / "vqgan", root, tmp_path / "three", process_index=2, process_count=3) is None
    assert encode.encode_dataset(tmp_path / "vqgan", root, tmp_path / "three", process_index=1, process_count=3) is None
    merged = encode.encode_dataset(tmp_path / "vqgan", root, tmp_path / "three", process_index=0, process_count=3)
    assert merged == single and merged.num_examples == {"train": 5, "test": 3}
    assert [p.name for p in (tmp_path / "three").iterdir()] == [single.name]  # the parts are gone

    meta, counts, episodes = _by_id(tmp_path / "three")
    assert meta == single
    assert counts == {"train": Counter(f"ep_{i}.npz" for i in range(5)),
                      "test": Counter(["a.mp4", "b.mp4", "sub/c.mp4"])}  # every episode exactly once
    for (split, eid), ep in episodes.items():
        ref = formats.read_episode(root / split / eid, num_actions=6)
        np.testing.assert_array_equal(ep["codes"], fake_codes(ref["video"]))
        np.testing.assert_array_equal(ep["actions"], ref["actions"])
    _, single_counts, single_episodes = _by_id(tmp_path / "one")
    assert single_counts == counts
    for key, ep in single_episodes.items():
        np.testing.assert_array_equal(ep["codes"], episodes[key]["codes"])


def test_encode_processes_running_at_once_and_an_empty_share(tmp_path, fake_vqgan, monkeypatch):
    encode = fake_vqgan
    for i in range(2):
        write_npz(tmp_path / "src" / "train" / f"ep_{i}.npz", seed=i)
    monkeypatch.setattr(encode.Parts, "POLL_S", 0.05)
    monkeypatch.setattr(encode.Parts, "WAIT_S", 120)  # a share that dies fails the test instead of hanging it
    args = (tmp_path / "vqgan", tmp_path / "src", tmp_path / "out")
    errors = []

    def share(i):
        try:
            encode.encode_dataset(*args, process_index=i, process_count=3)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    # process 2 has no episode and writes only its marker, possibly before anything else exists
    others = [threading.Thread(target=share, args=(i,)) for i in (2, 1)]
    for thread in others:
        thread.start()
    merged = encode.encode_dataset(*args, process_index=0, process_count=3)  # waits for the others as needed
    for thread in others:
        thread.join()
    assert not errors, errors
    _, counts, episodes = _by_id(tmp_path / "out")
    assert merged.num_examples == {"train": 2} and counts == {"train": Counter(["ep_0.npz", "ep_1.npz"])}
    np.testing.assert_array_equal(episodes["train", "ep_1.npz"]["codes"],
                                  fake_codes(np.load(tmp_path / "src" / "train" / "ep_1.npz")["video"]))
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        encode.encode_dataset(*args, process_index=1, process_count=3)
    with pytest.raises(UserError, match=r"process index 3 is not in 0..2"):
        encode.encode_dataset(*args, process_index=3, process_count=3)
