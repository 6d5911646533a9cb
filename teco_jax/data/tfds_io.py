"""Episodes -> TFDS array_record datasets, and back, without TensorFlow.

Every data source (generator output, the TECO authors' downloads, pre-encoded VQ
codes) becomes a TFDS dataset with the same feature names:

    video    uint8 (T, H, W, 3)     raw frames          (or)
    codes    int16 (T, h, w)        VQ-GAN code indices
    actions  int32 (T,)
    pose     float32 (T, 3)         optional: x, y, heading
    <extra>  any fixed shape        optional per-episode arrays (e.g. maze `layout`)
    episode_id  text                the source file, so errors can name it

Arrays are stored as raw bytes (`Encoding.BYTES`): decoding is a memory view, which
is what makes reading 300-frame episodes fast. A directory holds one dataset:
`DATA_DIR/<name>/<version>/` plus our `teco_meta.json` beside TFDS's own metadata
(action count and names, episode lengths, which frame feature it carries).

`load` opens every array_record shard up front (its footer only: milliseconds) and
checks its record count against TFDS's metadata, so a truncated or corrupt file is a
`CorruptFileError` naming it before any training starts; a read error later (damage
inside a file) names the file too.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from teco_jax.data import formats
from teco_jax.errors import UserError

VERSION = "1.0.0"
META_FILE = "teco_meta.json"
FRAME_FEATURES = ("video", "codes")
_SKIP = ("episode_id",)


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What the pipeline needs to know about a dataset before reading it."""

    name: str
    frame_feature: str  # "video" or "codes"
    frame_shape: tuple[int, ...]  # (H, W, 3) or (h, w)
    num_actions: int | None
    min_length: int
    max_length: int
    num_examples: dict[str, int]
    extras: tuple[str, ...] = ()
    source: str = ""
    vocab_size: int | None = None  # codes datasets: the VQ-GAN codebook size
    vqgan: str = ""  # codes datasets: the workdir of the VQ-GAN that wrote them
    action_names: tuple[str, ...] = ()  # from the episode root's meta.json, when it names them
    num_actions_inferred: bool = False  # num_actions is max action + 1 over the data (no meta.json)

    @classmethod
    def load(cls, version_dir: Path) -> "DatasetMeta":
        raw = json.loads((version_dir / META_FILE).read_text())
        raw["frame_shape"] = tuple(raw["frame_shape"])
        raw["extras"] = tuple(raw.get("extras", ()))
        raw["action_names"] = tuple(raw.get("action_names", ()))
        return cls(**raw)

    def describe_actions(self) -> str:
        """"6 actions (forward, backward, ...)", "7 actions (inferred ...)" or "an unknown number of actions"."""
        if self.num_actions is None:
            return "an unknown number of actions"
        if self.num_actions_inferred:
            return f"{self.num_actions} actions (inferred from the data: largest action + 1)"
        return f"{self.num_actions} actions{_names(self.action_names)}"


def _names(action_names: tuple[str, ...]) -> str:
    return f" ({', '.join(action_names)})" if action_names else ""


def check_actions(meta: DatasetMeta, num_actions: int, what: str, action_names: tuple[str, ...] = (),
                  data_dir: Path | str = "") -> None:
    """UserError unless the dataset's action set is the model's `num_actions` actions.

    what: the model's setting, e.g. "config.model.num_actions" (the model's null action,
    for action dropout, is the extra index num_actions). A count inferred from the data is
    a lower bound, so it only has to fit. Datasets that know no count pass.
    """
    where = data_dir or meta.name
    if meta.num_actions is None:
        return
    fits = meta.num_actions <= num_actions if meta.num_actions_inferred else meta.num_actions == num_actions
    named = bool(action_names) and bool(meta.action_names)
    if fits and not (named and tuple(action_names) != tuple(meta.action_names)):
        return
    raise UserError(f"{where}: the dataset has {meta.describe_actions()}, but {what} is {num_actions}"
                    f"{_names(tuple(action_names))}: the model and its data must share one action set")


def check_action_values(actions: np.ndarray, num_actions: int, what: str, data_dir: Path | str) -> None:
    """UserError naming the dataset if any of `actions` lies outside the model's [0, num_actions]
    (num_actions itself is the null action: no action given, e.g. an mp4 without its npz)."""
    actions = np.asarray(actions)
    bad = actions[(actions < 0) | (actions > num_actions)]
    if bad.size:
        raise UserError(f"{data_dir}: the dataset's actions {sorted(set(bad.tolist()))[:8]} are outside "
                        f"[0, {num_actions}] ({what} is {num_actions}; {num_actions} is the null action): "
                        f"wrong dataset for this model?")


def _frame_feature(example: Mapping[str, np.ndarray]) -> str:
    found = [k for k in FRAME_FEATURES if k in example]
    if len(found) != 1:
        raise formats.EpisodeError(f"an episode needs exactly one of {FRAME_FEATURES}; has {sorted(example)}")
    return found[0]


def features_for(example: Mapping[str, np.ndarray]) -> tfds.features.FeaturesDict:
    """The TFDS feature spec of episodes shaped like `example` (time axis left open)."""
    bytes_enc = tfds.features.Encoding.BYTES
    frame = _frame_feature(example)
    spec = {}
    for key, arr in example.items():
        if key in _SKIP:
            continue
        arr = np.asarray(arr)
        per_frame = key in (frame, "actions", "pose")
        shape = (None,) + arr.shape[1:] if per_frame else arr.shape
        dtype = np.int16 if key == "codes" else arr.dtype
        spec[key] = tfds.features.Tensor(shape=shape, dtype=dtype, encoding=bytes_enc)
    spec["episode_id"] = tfds.features.Text()
    return tfds.features.FeaturesDict(spec)


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
    frame = _frame_feature(first)
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


def default_name(src: Path) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in src.resolve().name.lower()).strip("_")
    return stem if stem and stem[0].isalpha() else f"ds_{stem}"


def find_dataset(data_dir: Path | str) -> tuple[str, Path]:
    """(name, version dir) of the single TFDS dataset under `data_dir`."""
    data_dir = Path(data_dir)
    found = sorted(data_dir.glob(f"*/{VERSION}/{META_FILE}"))
    if not found:
        raise FileNotFoundError(f"{data_dir}: no teco_jax TFDS dataset here (expected "
                                f"{data_dir}/<name>/{VERSION}/{META_FILE}; build one with "
                                f"`python -m teco_jax.data.build`)")
    if len(found) > 1:
        names = [p.parent.parent.name for p in found]
        raise ValueError(f"{data_dir}: holds several datasets {names}; point at a directory with one")
    return found[0].parent.parent.name, found[0].parent


class CorruptFileError(UserError):
    """An array_record file of a dataset is truncated, corrupt or missing."""


def rebuild_hint(meta: DatasetMeta, data_dir: Path | str, version_dir: Path) -> str:
    """How to write the dataset again: the command that made it, from its teco_meta.json."""
    if meta.frame_feature == "codes" and meta.vqgan and meta.source:
        cmd = f"python -m teco_jax.encode --vqgan {meta.vqgan} --data {meta.source} --out {data_dir} --name {meta.name}"
    elif meta.source:
        cmd = f"python -m teco_jax.data.build --src {meta.source} --out {data_dir} --name {meta.name}"
    else:
        cmd = "python -m teco_jax.data.build (or teco_jax.encode for codes)"
    return f"delete {version_dir} and rebuild the dataset: {cmd}"


def _shard_problem(path: str, expected: int) -> str | None:
    """What is wrong with the array_record shard at `path` meant to hold `expected` records, or None.

    Opening a reader reads only the file's footer (its record index), which a truncated file lacks."""
    from array_record.python import array_record_module

    if not os.path.isfile(path):
        return "missing file"
    size = os.path.getsize(path)
    try:
        reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
    except RuntimeError as e:
        return f"cannot be opened ({e})"
    ok, count = reader.ok(), reader.num_records()
    try:
        reader.close()
    except RuntimeError:  # a broken file reports its state again when closed
        pass
    if not ok:
        return f"truncated or corrupt array_record file ({size} bytes, its record index is unreadable)"
    if count != expected:
        return f"holds {count} records, but the dataset's metadata says {expected} (truncated or replaced?)"
    return None


def _shards(source) -> list[tuple[str, int]]:
    """(file, records) of every shard of one split's TFDS source, in index order."""
    return [(os.fspath(fi.filename), int(fi.examples_in_shard))
            for fi in source.dataset_info.splits[source.split].file_instructions]


class CheckedSource:
    """One split's random-access source (len, [i]) whose read errors name their array_record file."""

    def __init__(self, source, shards: list[tuple[str, int]], hint: str):
        self._source, self._shards, self._hint = source, shards, hint
        self._ends = list(np.cumsum([n for _, n in shards]))

    def __len__(self) -> int:
        return len(self._source)

    def file_of(self, index: int) -> str:
        """The shard file that holds record `index`."""
        i = bisect.bisect_right(self._ends, int(index) % max(len(self), 1))
        return self._shards[min(i, len(self._shards) - 1)][0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self._source[index]
        except (RuntimeError, ValueError, OSError) as e:
            cause = str(e).splitlines()[0] if str(e) else ""
            raise CorruptFileError(f"{self.file_of(index)}: record {index} cannot be read, the file is corrupt "
                                   f"({type(e).__name__}: {cause}); {self._hint}") from e

    def __repr__(self) -> str:
        return f"CheckedSource({self._source!r})"


def check_files(shards: Mapping[str, list[tuple[str, int]]], meta: DatasetMeta, data_dir: Path | str,
                version_dir: Path) -> None:
    """CorruptFileError naming the first shard file that is missing, truncated or short of records."""
    for split_shards in shards.values():
        for path, expected in split_shards:
            problem = _shard_problem(path, expected)
            if problem:
                raise CorruptFileError(f"{path}: {problem}; {rebuild_hint(meta, data_dir, version_dir)}")


def load_meta(data_dir: Path | str) -> DatasetMeta:
    """The metadata (teco_meta.json) of the dataset under `data_dir`, without opening its files."""
    return DatasetMeta.load(find_dataset(data_dir)[1])


def load(data_dir: Path | str) -> tuple[DatasetMeta, dict[str, CheckedSource]]:
    """The dataset's metadata and its random-access sources per split (TFDS data sources),
    after checking that every array_record file opens and holds its records."""
    name, version_dir = find_dataset(data_dir)
    meta = DatasetMeta.load(version_dir)
    # From the directory itself: tfds.data_source(name) would pick a registered TFDS dataset of
    # the same name (there is one called "dmlab") over the files here.
    sources = dict(tfds.builder_from_directory(str(version_dir)).as_data_source())
    shards = {split: _shards(src) for split, src in sources.items()}
    check_files(shards, meta, data_dir, version_dir)
    hint = rebuild_hint(meta, data_dir, version_dir)
    return meta, {split: CheckedSource(src, shards[split], hint) for split, src in sources.items()}


def load_frame_split(data_dir: Path | str, split: str) -> tuple[DatasetMeta, CheckedSource]:
    """The metadata and one split's source of a raw-frame dataset (not a code dataset), checked."""
    meta, sources = load(data_dir)
    if meta.frame_feature != "video":
        raise UserError(f"{data_dir} holds {meta.frame_feature}, not frames: --data must be a raw-frame "
                        f"dataset (python -m teco_jax.data.build), not a code dataset")
    if split not in sources:
        raise UserError(f"{data_dir} has no split {split!r}; it has {sorted(sources)}")
    return meta, sources[split]
