"""The grain pipeline: exact batches, resumable state, disjoint process shards."""

import numpy as np
import pytest

from teco_jax.data import pipeline, tfds_write


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_in_order_batches_equal_npz_source(episode_dir, tfds_dir):
    _, written = episode_dir
    ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=12, batch_size=4, shuffle=False,
                                  random_offset=False, num_epochs=1)
    batches = list(ds)
    assert len(batches) == 3
    for j, batch in enumerate(batches):
        refs = written["train"][4 * j: 4 * j + 4]
        for key in ("video", "actions", "pose", "layout"):
            np.testing.assert_array_equal(batch[key], np.stack([r[key] for r in refs]))
        np.testing.assert_array_equal(batch["episode_index"], np.arange(4 * j, 4 * j + 4))


def test_random_clips_are_slices_of_their_episode(episode_dir, tfds_dir):
    _, written = episode_dir
    ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=5, batch_size=4, seed=3)
    starts = []
    for batch in _take(iter(ds), 6):
        for b in range(4):
            ref = written["train"][batch["episode_index"][b]]
            s = batch["start"][b]
            starts.append(s)
            np.testing.assert_array_equal(batch["video"][b], ref["video"][s:s + 5])
            np.testing.assert_array_equal(batch["actions"][b], ref["actions"][s:s + 5])
            np.testing.assert_array_equal(batch["pose"][b], ref["pose"][s:s + 5])
    assert min(starts) >= 0 and max(starts) <= 7 and len(set(starts)) > 3


def test_restored_state_gives_identical_next_batch(tfds_dir):
    ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=5, batch_size=4, seed=7)
    it = iter(ds)
    _take(it, 5)  # past the end of the first epoch (3 batches)
    state = it.get_state()
    expected = _take(it, 3)
    restored = iter(ds)
    restored.set_state(state)
    for want, got in zip(expected, _take(restored, 3)):
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])


def test_epochs_are_reshuffled(tfds_dir):
    ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=5, batch_size=1, seed=1, num_epochs=2)
    order = [int(b["episode_index"][0]) for b in ds]
    assert sorted(order[:12]) == sorted(order[12:]) == list(range(12))
    assert order[:12] != order[12:] and order[:12] != list(range(12))


@pytest.mark.parametrize("num_procs", [2, 3])
def test_process_shards_cover_each_episode_once(tfds_dir, num_procs):
    seen = []
    for p in range(num_procs):
        ds, _ = pipeline.make_dataset(tfds_dir, "train", seq_len=5, batch_size=1, seed=0, num_epochs=1,
                                      process_index=p, process_count=num_procs, drop_remainder=False)
        seen.append([int(i) for b in ds for i in b["episode_index"]])
    flat = sorted(i for s in seen for i in s)
    assert flat == list(range(12))
    assert all(len(s) == 12 // num_procs for s in seen)


def test_seq_len_longer_than_episodes(tfds_dir):
    with pytest.raises(pipeline.ClipError, match="seq_len=13 is not possible for toy: its episodes have 12-12"):
        pipeline.make_dataset(tfds_dir, "train", seq_len=13, batch_size=2)


def test_unknown_split_and_too_small_shard(tfds_dir):
    with pytest.raises(KeyError, match="no split 'valid'"):
        pipeline.make_dataset(tfds_dir, "valid", seq_len=4, batch_size=2)
    with pytest.raises(ValueError, match="too few for one batch of 8"):
        pipeline.make_dataset(tfds_dir, "test", seq_len=4, batch_size=8, num_epochs=1)
    pipeline.make_dataset(tfds_dir, "test", seq_len=4, batch_size=8)  # repeating: fine


def test_code_datasets(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [(f"e{i}", {"codes": rng.integers(0, 1024, (9, 4, 4)).astype(np.int16),
                           "actions": rng.integers(0, 6, (9,)).astype(np.int32)}) for i in range(4)]
    meta = tfds_write.write_dataset(tmp_path, "codes_toy", {"train": iter(episodes)}, num_actions=6, vocab_size=1024)
    assert (meta.frame_feature, meta.frame_shape, meta.vocab_size) == ("codes", (4, 4), 1024)
    ds, _ = pipeline.make_dataset(tmp_path, "train", seq_len=9, batch_size=4, shuffle=False, num_epochs=1)
    [batch] = list(ds)
    assert batch["codes"].dtype == np.int32 and batch["codes"].shape == (4, 9, 4, 4)
    np.testing.assert_array_equal(batch["codes"], np.stack([e["codes"] for _, e in episodes]))
