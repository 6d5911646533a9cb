"""The grain input pipeline: clips of `seq_len` frames from a TFDS episode dataset.

    source (tfds.data_source) -> this process's shard -> shuffle (per epoch)
      -> repeat -> temporal crop (random or from the start) -> batch -> prefetch

Every step is a deterministic function of (seed, position in the stream), so the
iterator's state is a small dict: `get_state()` it into a checkpoint and
`set_state()` it back to get exactly the next batch. Each JAX process reads only
its own slice of the episodes (`process_index::process_count`).

Batches are dicts of numpy arrays with a leading batch axis B:
    video  uint8 (B, T, H, W, 3)  or  codes int32 (B, T, h, w)
    actions int32 (B, T), pose float32 (B, T, 3) when present, extras (B, ...),
    start int32 (B,): the first frame of each clip within its episode,
    episode_index int32 (B,): the episode's position in its split.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import grain
import numpy as np

from teco_jax.data import tfds_meta, tfds_read


class ClipError(ValueError):
    """An episode cannot provide the requested clip."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How clips are cut: `seq_len` frames, at a random offset or from frame 0."""

    seq_len: int
    frame_feature: str
    random_offset: bool = True


class CropClip(grain.transforms.RandomMap):
    """Cuts one clip out of an episode; per-frame arrays are sliced, the rest kept."""

    def __init__(self, spec: ClipSpec):
        self.spec = spec

    def random_map(self, episode: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        spec = self.spec
        length = len(episode["actions"])
        if length < spec.seq_len:
            raise ClipError(f"episode {_text(episode.get('episode_id'))!r} has {length} frames, "
                            f"fewer than seq_len={spec.seq_len}")
        start = int(rng.integers(0, length - spec.seq_len + 1)) if spec.random_offset else 0
        clip = slice(start, start + spec.seq_len)
        out = {}
        for key, value in episode.items():
            if key == "episode_id":
                continue
            if key in (spec.frame_feature, "actions", "pose"):
                value = value[clip]
            out[key] = value
        if spec.frame_feature == "codes":
            out["codes"] = out["codes"].astype(np.int32)
        out["start"] = np.int32(start)
        return out


def _with_index(num_episodes: int, index: int, episode: dict[str, Any]) -> dict[str, Any]:
    # Indices past the end come from later epochs (grain's repeat passes them through).
    return {**episode, "episode_index": np.int32(index % num_episodes)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_dataset(data_dir: Path | str, split: str, *, seq_len: int, batch_size: int, seed: int = 0,
                 shuffle: bool = True, random_offset: bool = True, num_epochs: int | None = None,
                 process_index: int = 0, process_count: int = 1, drop_remainder: bool = True,
                 read_threads: int = 2, prefetch: int = 4) -> tuple[grain.IterDataset, tfds_meta.DatasetMeta]:
    """A batched, sharded, checkpointable dataset over one split; returns it with the metadata.

    batch_size is per process (the global batch divided by process_count).
    num_epochs=None repeats forever; every epoch is reshuffled.
    """
    meta, sources = tfds_read.load(data_dir)
    if split not in sources:
        raise KeyError(f"{data_dir}: no split {split!r}; it has {sorted(sources)}")
    if seq_len < 1 or seq_len > meta.min_length:
        raise ClipError(f"seq_len={seq_len} is not possible for {meta.name}: its episodes have "
                        f"{meta.min_length}-{meta.max_length} frames")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    source = sources[split]
    if len(source) < process_count:
        raise ValueError(f"{meta.name}/{split} has {len(source)} episodes, fewer than the "
                         f"{process_count} processes reading it")
    ds = grain.MapDataset.source(source).map_with_index(functools.partial(_with_index, len(source)))
    ds = ds[process_index::process_count]
    if drop_remainder and num_epochs is not None and len(ds) * num_epochs < batch_size:
        raise ValueError(f"{meta.name}/{split}: this process's shard has {len(ds)} episodes, "
                         f"too few for one batch of {batch_size} in {num_epochs} epoch(s)")
    ds = ds.seed(seed * 1_000_003 + process_index)
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(CropClip(ClipSpec(seq_len, meta.frame_feature, random_offset)))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch))
    return it_ds, meta
