"""The schema of teco_jax's TFDS datasets and their metadata: what a dataset is, not its files.

Every data source (generator output, the TECO authors' downloads, pre-encoded VQ
codes) becomes a TFDS dataset with the same feature names:

    video    uint8 (T, H, W, 3)     raw frames          (or)
    codes    int16 (T, h, w)        VQ-GAN code indices
    actions  int32 (T,)
    pose     float32 (T, 3)         optional: x, y, heading
    <extra>  any fixed shape        optional per-episode arrays (e.g. maze `layout`)
    episode_id  text                the source file, so errors can name it

A directory holds one dataset: `DATA_DIR/<name>/<version>/` plus our `teco_meta.json`
beside TFDS's own metadata (action count and names, episode lengths, which frame feature
it carries): `DatasetMeta`. Here: that record, the feature spec (`features_for`), finding
a dataset in a directory, and checking a model's action set against a dataset's.
Writing is tfds_write.py, reading tfds_read.py; both build on this module.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

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


def frame_feature(example: Mapping[str, np.ndarray]) -> str:
    """The one frame feature ("video" or "codes") of an episode; EpisodeError unless it has exactly one."""
    found = [k for k in FRAME_FEATURES if k in example]
    if len(found) != 1:
        raise formats.EpisodeError(f"an episode needs exactly one of {FRAME_FEATURES}; has {sorted(example)}")
    return found[0]


def features_for(example: Mapping[str, np.ndarray]) -> tfds.features.FeaturesDict:
    """The TFDS feature spec of episodes shaped like `example` (time axis left open)."""
    bytes_enc = tfds.features.Encoding.BYTES
    frame = frame_feature(example)
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


def rebuild_hint(meta: DatasetMeta, data_dir: Path | str, version_dir: Path) -> str:
    """How to write the dataset again: the command that made it, from its teco_meta.json."""
    if meta.frame_feature == "codes" and meta.vqgan and meta.source:
        cmd = f"python -m teco_jax.encode --vqgan {meta.vqgan} --data {meta.source} --out {data_dir} --name {meta.name}"
    elif meta.source:
        cmd = f"python -m teco_jax.data.build --src {meta.source} --out {data_dir} --name {meta.name}"
    else:
        cmd = "python -m teco_jax.data.build (or teco_jax.encode for codes)"
    return f"delete {version_dir} and rebuild the dataset: {cmd}"


def load_meta(data_dir: Path | str) -> DatasetMeta:
    """The metadata (teco_meta.json) of the dataset under `data_dir`, without opening its files."""
    return DatasetMeta.load(find_dataset(data_dir)[1])
