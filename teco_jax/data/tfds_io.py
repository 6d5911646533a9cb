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
(action count, episode lengths, which frame feature it carries).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from teco_jax.data import formats

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

    @classmethod
    def load(cls, version_dir: Path) -> "DatasetMeta":
        raw = json.loads((version_dir / META_FILE).read_text())
        raw["frame_shape"] = tuple(raw["frame_shape"])
        raw["extras"] = tuple(raw.get("extras", ()))
        return cls(**raw)


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


class _EpisodeBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder over in-memory episode iterators (no class per dataset needed)."""

    VERSION = tfds.core.Version(VERSION)

    def __init__(self, *, name: str, features, splits: Mapping[str, Iterable], **kwargs):
        self.name = name
        self._features = features
        self._splits = splits
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=self._features, disable_shuffling=True,
                                     description="teco_jax episodes (see teco_meta.json)")

    def _split_generators(self, dl_manager):
        del dl_manager
        return {name: self._generate_examples(episodes) for name, episodes in self._splits.items()}

    def _generate_examples(self, episodes):
        for index, (episode_id, episode) in enumerate(episodes):
            yield index, {**episode, "episode_id": episode_id}


class _Checked:
    """Wraps an episode iterator: checks every episode against the first, records lengths."""

    def __init__(self, split: str, episodes: Iterator[tuple[str, dict]], spec: Mapping[str, tuple]):
        self.split, self._episodes, self._spec = split, episodes, spec
        self.lengths: list[int] = []

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
            yield episode_id, ep


def write_dataset(data_dir: Path | str, name: str, splits: Mapping[str, Iterator[tuple[str, dict]]],
                  num_actions: int | None = None, source: str = "", vocab_size: int | None = None,
                  vqgan: str = "") -> DatasetMeta:
    """Write episode iterators (split -> (episode id, episode)) as one TFDS array_record dataset."""
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
    builder = _EpisodeBuilder(name=name, features=features_for(first), splits=checked,
                              data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    lengths = [n for c in checked.values() for n in c.lengths]
    meta = DatasetMeta(
        name=name, frame_feature=frame, frame_shape=tuple(int(d) for d in first[frame].shape[1:]),
        num_actions=num_actions, min_length=min(lengths), max_length=max(lengths),
        num_examples={s: len(c.lengths) for s, c in checked.items()},
        extras=tuple(sorted(k for k in first if k not in (frame, "actions", "pose"))),
        source=source, vocab_size=vocab_size, vqgan=vqgan)
    (version_dir / META_FILE).write_text(json.dumps(dataclasses.asdict(meta), indent=2))
    return meta


def build_from_episodes(src: Path | str, out: Path | str, name: str | None = None,
                        num_actions: int | None = None, skip_bad: bool = False) -> DatasetMeta:
    """Convert ROOT/{train,test} episode files (npz or mp4 + npz) to a TFDS dataset at `out`."""
    src = Path(src)
    meta = formats.read_meta(src)
    num_actions = num_actions if num_actions is not None else meta.get("num_actions")
    splits = {s: formats.iter_episodes(src, s, num_actions, skip_bad)
              for s in formats.SPLITS if (src / s).is_dir()}
    if not splits:
        raise formats.EpisodeError(f"{src}: neither train/ nor test/ exists")
    return write_dataset(out, name or default_name(src), splits, num_actions, source=str(src))


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


def load(data_dir: Path | str) -> tuple[DatasetMeta, dict[str, "tfds.data_sources.ArrayRecordDataSource"]]:
    """The dataset's metadata and its random-access sources per split (`tfds.data_source`)."""
    name, version_dir = find_dataset(data_dir)
    meta = DatasetMeta.load(version_dir)
    sources = tfds.data_source(name, data_dir=str(Path(data_dir)), download=False)
    return meta, dict(sources)


def load_frame_split(data_dir: Path | str, split: str) -> tuple[DatasetMeta, "tfds.data_sources.ArrayRecordDataSource"]:
    """The metadata and one split's source of a raw-frame dataset (not a code dataset), checked."""
    meta, sources = load(data_dir)
    if meta.frame_feature != "video":
        raise ValueError(f"{data_dir} holds {meta.frame_feature}, not frames: --data must be a raw-frame "
                         f"dataset (python -m teco_jax.data.build), not a code dataset")
    if split not in sources:
        raise ValueError(f"{data_dir} has no split {split!r}; it has {sorted(sources)}")
    return meta, sources[split]
