"""A TFDS dataset on disk -> random-access sources per split, with its files checked first.

`load` opens every array_record shard up front (its footer only: milliseconds) and
checks its record count against TFDS's metadata, so a truncated or corrupt file is a
`CorruptFileError` naming it before any training starts; a read error later (damage
inside a file) names the file too (`CheckedSource`). Each error says how to rebuild the
dataset (tfds_meta.rebuild_hint).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from teco_jax.data.tfds_meta import DatasetMeta, find_dataset, rebuild_hint
from teco_jax.errors import UserError


class CorruptFileError(UserError):
    """An array_record file of a dataset is truncated, corrupt or missing."""


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
