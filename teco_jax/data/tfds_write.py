"""Episodes -> a TFDS array_record dataset on disk, without TensorFlow.

`write_dataset` streams episode iterators (split -> (episode id, episode)) into
array_record shards, checks every episode against the first, and writes TFDS's metadata
and our teco_meta.json (tfds_meta.py) last: the dataset appears whole or not at all.
`build_from_episodes` does it for a directory of episode files (teco_jax/data/formats.py).
Arrays are stored as raw bytes (`Encoding.BYTES`): decoding is a memory view, which is
what makes reading 300-frame episodes fast (tfds_read.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from teco_jax.data import formats
from teco_jax.data.tfds_meta import META_FILE, VERSION, DatasetMeta, default_name, features_for, frame_feature

SHARD_BYTES = 256 << 20  # a new array_record shard starts once the current one holds this much


def _write_split(version_dir: Path, name: str, split: str, episodes: Iterable[tuple[str, dict]],
                 features: tfds.features.FeaturesDict) -> tfds.core.SplitInfo:
    """Stream a split's episodes into array_record shards of about SHARD_BYTES each, in order.

    TFDS's own builder passes examples through its shuffler, which spills to disk through
    TensorFlow once a split exceeds 1 GB; writing the shards here keeps memory bounded by
    one episode and needs no TensorFlow. Shards get their final `-of-N` names at the end."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from tensorflow_datasets.core import example_serializer

    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    parts: list[Path] = []
    lengths: list[int] = []
    total = shard_bytes = 0
    writer = None
    for episode_id, episode in episodes:
        record = serializer.serialize_example(features.encode_example({**episode, "episode_id": episode_id}))
        if writer is None or shard_bytes >= SHARD_BYTES:
            if writer is not None:
                writer.close()
            parts.append(version_dir / f"{name}-{split}.array_record.part{len(parts):05d}")
            writer = ArrayRecordWriter(str(parts[-1]), "group_size:1")
            lengths.append(0)
            shard_bytes = 0
        writer.write(record)
        lengths[-1] += 1
        shard_bytes += len(record)
        total += len(record)
    if writer is not None:
        writer.close()
    for index, part in enumerate(parts):
        part.rename(version_dir / f"{name}-{split}.array_record-{index:05d}-of-{len(parts):05d}")
    return tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=total)


class _Checked:
    """Wraps an episode iterator: checks every episode against the first, records lengths."""

    def __init__(self, split: str, episodes: Iterator[tuple[str, dict]], spec: Mapping[str, tuple]):
        self.split, self._episodes, self._spec = split, episodes, spec
        self.lengths: list[int] = []
        self.max_action = -1

    def __iter__(self):
        for episode_id, ep in self._episodes:
            if set(ep) != set(self._spec):
                raise formats.EpisodeError(f"{self.split}/{episode_id}: has arrays {sorted(ep)}, "
                                           f"but the dataset's first episode has {sorted(self._spec)}")
            for key, (shape, per_frame) in self._spec.items():
                got = ep[key].shape[1:] if per_frame else ep[key].shape
                if got != shape:
                    raise formats.EpisodeError(f"{self.split}/{episode_id}: `{key}` has shape {ep[key].shape}; "
                                               f"the dataset's first episode has {shape} per "
                                               f"{'frame' if per_frame else 'episode'}")
            self.lengths.append(len(ep["actions"]))
            if len(ep["actions"]):
                self.max_action = max(self.max_action, int(np.max(ep["actions"])))
            yield episode_id, ep


def write_dataset(data_dir: Path | str, name: str, splits: Mapping[str, Iterator[tuple[str, dict]]],
                  num_actions: int | None = None, source: str = "", vocab_size: int | None = None,
                  vqgan: str = "", action_names: tuple[str, ...] = ()) -> DatasetMeta:
    """Write episode iterators (split -> (episode id, episode)) as one TFDS array_record dataset.

    num_actions None: inferred as the largest action + 1 (meta.num_actions_inferred)."""
    data_dir = Path(data_dir)
    version_dir = data_dir / name / VERSION
    if (version_dir / "dataset_info.json").exists():
        raise FileExistsError(f"{version_dir} already holds a dataset; delete it or choose another --out")
    iters = {s: iter(it) for s, it in splits.items()}
    first_split = next(iter(iters))
    try:
        first_id, first = next(iters[first_split])
    except StopIteration:
        raise formats.EpisodeError(f"split {first_split!r} has no episodes") from None
    frame = frame_feature(first)
    per_frame = (frame, "actions", "pose")
    spec = {k: (v.shape[1:], True) if k in per_frame else (v.shape, False) for k, v in first.items()}

    def chain(split, it):
        if split == first_split:
            yield first_id, first
        yield from it

    checked = {s: _Checked(s, chain(s, it), spec) for s, it in iters.items()}
    features = features_for(first)
    tmp = version_dir.with_name(version_dir.name + ".incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        infos = [_write_split(tmp, name, split, episodes, features) for split, episodes in checked.items()]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tfds.folder_dataset.write_metadata(data_dir=tmp, features=features, split_infos=infos, version=VERSION,
                                       check_data=False, disable_shuffling=True,
                                       description="teco_jax episodes (see teco_meta.json)")
    lengths = [n for c in checked.values() for n in c.lengths]
    inferred = num_actions is None
    if inferred:
        num_actions = max(c.max_action for c in checked.values()) + 1
    meta = DatasetMeta(
        name=name, frame_feature=frame, frame_shape=tuple(int(d) for d in first[frame].shape[1:]),
        num_actions=int(num_actions), min_length=min(lengths), max_length=max(lengths),
        num_examples={s: len(c.lengths) for s, c in checked.items()},
        extras=tuple(sorted(k for k in first if k not in (frame, "actions", "pose"))),
        source=source, vocab_size=vocab_size, vqgan=vqgan,
        action_names=tuple(action_names) if len(action_names) == num_actions else (),
        num_actions_inferred=inferred)
    (tmp / META_FILE).write_text(json.dumps(dataclasses.asdict(meta), indent=2))
    shutil.rmtree(version_dir, ignore_errors=True)  # a dataset left incomplete by an earlier failure
    tmp.rename(version_dir)  # all or nothing: a failed build leaves no readable half-dataset
    return meta


def build_from_episodes(src: Path | str, out: Path | str, name: str | None = None, num_actions: int | None = None,
                        skip_bad: bool = False, splits: list[str] | None = None) -> DatasetMeta:
    """Convert the listed splits (None: every one found) of ROOT/{train,test} episode files (npz,
    or mp4 with or without a sibling npz) to a TFDS dataset at `out`.

    The action set is `num_actions`, else ROOT/meta.json's (episodes with actions outside it
    are refused), else inferred from the data (meta.num_actions_inferred). What the readers
    did as the TECO authors' loader does (actions cut, null actions) is printed once, at the end."""
    src = Path(src)
    num_actions, names, origin = formats.action_set(src, num_actions)
    notes = formats.ReadNotes()
    episodes = {s: formats.iter_episodes(src, s, num_actions, skip_bad, origin, notes)
                for s in formats.find_splits(src, splits)}
    meta = write_dataset(out, name or default_name(src), episodes, num_actions, source=str(src), action_names=names)
    notes.report()
    return meta
