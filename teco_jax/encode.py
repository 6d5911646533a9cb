"""Pre-encode a video dataset into VQ-GAN code indices, once, so TECO trains on codes.

    python -m teco_jax.encode --vqgan runs/vqgan --data runs/quickstart/maze_tfds --out runs/maze_codes

--data is a TFDS directory (teco_jax.data.build) or an episode root in the authors'
layout (ROOT/{train,test}/**/*.npz or .mp4). The output is a TFDS array_record dataset
with `codes` int16 (T, 16, 16), `actions`, and `pose`/extras when present; its
teco_meta.json names the VQ-GAN so TECO can find the code embeddings and decoder, and
carries the action set (count and names) of --data over.

Several processes (hosts) can encode one large set together, each the episodes i (per
split) with i % count == index, into the same --out, which all of them must see:

    python -m teco_jax.encode ... --process_index I --process_count N   # I = 0..N-1, any order
    python -m teco_jax.encode ... --distributed   # the index and count from jax.distributed

(default: jax.process_index() of jax.process_count(); one process writes OUT directly).
Process I writes its share as a dataset of its own under OUT/.<name>.parts/process-I/
and then a marker file; process 0 waits for every marker, moves all shards into one
dataset OUT/<name>/1.0.0/ (renamed in place, all or nothing) and removes the parts. The
order of the episodes in it is by process, then by index. After a failure, delete
OUT/.<name>.parts and run every process again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from teco_jax.data import formats, tfds_meta, tfds_read, tfds_write
from teco_jax.errors import UserError
from teco_jax.loading import load_vqgan


@nnx.jit
def _encode_frames(vqgan, frames_NHW3: jax.Array) -> jax.Array:
    return vqgan.encode(frames_NHW3.astype(jnp.float32) / 127.5 - 1.0)["codes"]


class Encoder:
    """Encodes frames in fixed-size chunks (one compiled program), padding the last one."""

    def __init__(self, vqgan, chunk: int = 64):
        self.vqgan, self.chunk = vqgan, chunk

    def __call__(self, video_THW3: np.ndarray) -> np.ndarray:
        t = len(video_THW3)
        pad = (-t) % self.chunk
        frames = np.concatenate([video_THW3, np.zeros((pad,) + video_THW3.shape[1:], np.uint8)]) if pad else video_THW3
        codes = [np.asarray(_encode_frames(self.vqgan, jnp.asarray(frames[i:i + self.chunk])))
                 for i in range(0, len(frames), self.chunk)]
        return np.concatenate(codes)[:t].astype(np.int16)


def _episodes(data: Path, split: str, num_actions: int | None = None, num_actions_from: str = "",
              share: tuple[int, int] = (0, 1), notes: formats.ReadNotes | None = None,
              ) -> tuple[Iterator[tuple[str, dict]], int]:
    """(episode iterator, number of episodes) from a TFDS dir or an episode root (whose
    episodes are checked against num_actions): the episodes i with i % count == index,
    for share = (index, count)."""
    index, count = share
    try:
        meta, sources = tfds_read.load(data)
    except FileNotFoundError:
        files = formats.find_episodes(data, split)[index::count]
        return ((str(p.relative_to(data / split)), formats.read_episode(p, num_actions, num_actions_from, notes))
                for p in files), len(files)
    if split not in sources:
        return iter(()), 0
    src = sources[split]
    indices = range(index, len(src), count)

    def gen():
        for i in indices:
            ep = dict(src[i])
            eid = ep.pop("episode_id")
            yield (eid.decode() if isinstance(eid, bytes) else str(eid)), ep

    return gen(), len(indices)


def splits_of(data: Path) -> list[str]:
    try:
        _, sources = tfds_read.load(data)
        return [s for s in formats.SPLITS if s in sources]
    except FileNotFoundError:
        return [s for s in formats.SPLITS if (data / s).is_dir()]


def action_set_of(data: Path) -> tuple[int | None, tuple[str, ...], str]:
    """(num_actions, action names, where the count comes from) of --data: a TFDS dataset's
    metadata (None when its count was inferred: inferred again), or an episode root's meta.json."""
    try:
        meta = tfds_read.load(data)[0]
    except FileNotFoundError:
        return formats.action_set(data)
    return (None if meta.num_actions_inferred else meta.num_actions), meta.action_names, ""


def encode_dataset(vqgan_dir: Path, data: Path, out: Path, name: str | None = None, chunk: int = 64,
                   process_index: int | None = None, process_count: int | None = None,
                   ) -> tfds_meta.DatasetMeta | None:
    """Encode --data's episodes (this process's share of them) into a code dataset at `out`.

    process_index, process_count: default jax.process_index() and jax.process_count(). With
    several processes, each writes its share under `out` and process 0 assembles the dataset
    once all shares are there (see the module docstring); it returns the dataset's metadata,
    the other processes None."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise UserError(f"process index {index} is not in 0..{count - 1} (--process_index {index} "
                        f"of --process_count {count})")
    name = name or f"{tfds_meta.default_name(Path(data))}_codes"
    parts = Parts(Path(out), name, count)
    if count > 1:
        parts.start(index)
    vqgan, vq_config = load_vqgan(vqgan_dir)
    encoder = Encoder(vqgan, chunk)
    num_actions, action_names, num_actions_from = action_set_of(data)
    splits = splits_of(data)
    if not splits:
        raise formats.EpisodeError(f"{data}: no train/ or test/ split to encode")
    notes = formats.ReadNotes()
    iters, total = {}, 0
    for s in splits:
        it, n = _episodes(data, s, num_actions, num_actions_from, (index, count), notes)
        if n or count == 1:  # a share may miss a split; one process writes every split, as before
            iters[s], total = it, total + n
    share = f" [process {index} of {count}]" if count > 1 else ""
    bar = tqdm(total=total, unit="ep", desc=f"encode {data}{share}")
    frames = [0]
    start = time.perf_counter()

    def encoded(it):
        for eid, ep in it:
            video = ep.pop("video")
            ep["codes"] = encoder(video)
            frames[0] += len(video)
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames[0] / (time.perf_counter() - start):.0f}")
            yield eid, ep

    meta = None
    if iters:  # a process whose share is empty writes only its marker
        meta = tfds_write.write_dataset(out if count == 1 else parts.part(index), name,
                                        {s: encoded(it) for s, it in iters.items()}, num_actions=num_actions,
                                        source=str(data), vocab_size=int(vq_config.model.codebook_size),
                                        vqgan=str(Path(vqgan_dir).absolute()), action_names=action_names)
    bar.close()
    notes.report()
    elapsed = time.perf_counter() - start
    print(f"encoded {frames[0]} frames in {elapsed:.1f}s: {frames[0] / elapsed:.0f} frames/s")
    if count == 1:
        return meta
    parts.finish(index, str(data), splits)
    return parts.merge() if index == 0 else None


class Parts:
    """The shares of several encoding processes under OUT/.<name>.parts/, and their merge.

    Process I writes only inside process-I/ and then, atomically, process-I.json; process 0
    alone merges, into OUT/<name>/1.0.0.incomplete, renamed to 1.0.0 when complete."""

    WAIT_S = 24 * 3600  # how long process 0 waits for the other shares
    POLL_S = 5.0

    def __init__(self, out: Path, name: str, count: int):
        self.out, self.name, self.count = out, name, count
        self.dir = out / f".{name}.parts"
        self.version_dir = out / name / tfds_meta.VERSION

    def part(self, index: int) -> Path:
        return self.dir / f"process-{index:05d}"

    def marker(self, index: int) -> Path:
        return self.dir / f"process-{index:05d}.json"

    def start(self, index: int) -> None:
        """Refuse an existing dataset; drop what this process left from an earlier run."""
        if (self.version_dir / "dataset_info.json").exists():
            raise FileExistsError(f"{self.version_dir} already holds a dataset; delete it or choose another --out")
        self.marker(index).unlink(missing_ok=True)
        shutil.rmtree(self.part(index), ignore_errors=True)

    def finish(self, index: int, source: str, splits: list[str]) -> None:
        """Mark this process's share as complete (written to a temporary name, then renamed)."""
        marker = self.marker(index)
        marker.parent.mkdir(parents=True, exist_ok=True)  # a process without episodes may come first
        tmp = marker.with_name(marker.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"process_count": self.count, "source": source, "splits": splits}))
        os.replace(tmp, marker)

    def wait(self) -> None:
        """Block until every process's marker exists; UserError naming the missing ones after WAIT_S."""
        deadline, told = time.monotonic() + self.WAIT_S, False
        while missing := [i for i in range(self.count) if not self.marker(i).exists()]:
            if time.monotonic() > deadline:
                raise UserError(f"{self.dir}: processes {missing} of {self.count} did not finish their share "
                                f"within {self.WAIT_S}s; delete {self.dir} and run every process again")
            if not told:
                print(f"process 0 waits for processes {missing} of {self.count} to finish ({self.dir})")
                told = True
            time.sleep(self.POLL_S)

    def merge(self) -> tfds_meta.DatasetMeta:
        """Process 0: move every share's shards into one dataset and write its metadata."""
        import tensorflow_datasets as tfds

        self.wait()
        markers = [json.loads(self.marker(i).read_text()) for i in range(self.count)]
        for i, m in enumerate(markers):
            if m != {**markers[0], "process_count": self.count}:
                raise UserError(f"{self.marker(i)}: written by another run ({m}, not {markers[0]}); delete "
                                f"{self.dir} and run every process again")
        splits = markers[0]["splits"]
        shares = [d for d in (self.part(i) / self.name / tfds_meta.VERSION for i in range(self.count))
                  if (d / tfds_meta.META_FILE).exists()]
        if not shares:
            raise formats.EpisodeError(f"{markers[0]['source']}: no episodes to encode")
        infos = [tfds.builder_from_directory(str(d)).info for d in shares]
        metas = [tfds_meta.DatasetMeta.load(d) for d in shares]
        for d, meta in zip(shares[1:], metas[1:]):
            if _share_key(d, meta) != _share_key(shares[0], metas[0]):
                raise formats.EpisodeError(f"{d}: this share's arrays (features.json) or VQ-GAN and action set "
                                           f"({tfds_meta.META_FILE}) differ from those of {shares[0]}")
        tmp = self.version_dir.with_name(self.version_dir.name + ".incomplete")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        split_infos = [self._move_shards(split, infos, tmp) for split in splits]
        tfds.folder_dataset.write_metadata(data_dir=tmp, features=infos[0].features, split_infos=split_infos,
                                           version=tfds_meta.VERSION, check_data=False, disable_shuffling=True,
                                           description=infos[0].description)
        meta = _merged_meta(metas, splits)
        (tmp / tfds_meta.META_FILE).write_text(json.dumps(dataclasses.asdict(meta), indent=2))
        shutil.rmtree(self.version_dir, ignore_errors=True)  # left incomplete by an earlier failure
        tmp.rename(self.version_dir)
        shutil.rmtree(self.dir)
        return meta

    def _move_shards(self, split: str, infos: list, dest: Path):
        """Rename one split's shards of every share into `dest`, numbered across shares."""
        import tensorflow_datasets as tfds

        found = [info.splits[split] for info in infos if split in info.splits]
        shards = [(path, n) for found_split in found
                  for path, n in zip(found_split.filepaths, found_split.shard_lengths)]
        for k, (path, _) in enumerate(shards):
            os.replace(path, dest / f"{self.name}-{split}.array_record-{k:05d}-of-{len(shards):05d}")
        return tfds.core.SplitInfo(name=split, shard_lengths=[n for _, n in shards],
                                   num_bytes=sum(f.num_bytes for f in found))


def _share_key(version_dir: Path, meta: tfds_meta.DatasetMeta) -> tuple:
    """What every share of one dataset must have in common: feature spec, VQ-GAN, action set."""
    actions = "inferred" if meta.num_actions_inferred else meta.num_actions
    return ((version_dir / "features.json").read_text(), meta.frame_shape, meta.extras, meta.vqgan,
            meta.vocab_size, actions, meta.action_names)


def _merged_meta(metas: list[tfds_meta.DatasetMeta], splits: list[str]) -> tfds_meta.DatasetMeta:
    """The teco_meta.json of the shares together: summed counts, overall lengths and actions."""
    first = metas[0]
    num_actions = max(m.num_actions for m in metas) if first.num_actions_inferred else first.num_actions
    return dataclasses.replace(
        first, num_actions=num_actions, min_length=min(m.min_length for m in metas),
        max_length=max(m.max_length for m in metas),
        num_examples={s: sum(m.num_examples.get(s, 0) for m in metas) for s in splits},
        action_names=first.action_names if len(first.action_names) == num_actions else ())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vqgan", type=Path, required=True, help="workdir of a trained VQ-GAN")
    p.add_argument("--data", type=Path, required=True, help="TFDS dataset dir or episode root to encode")
    p.add_argument("--out", type=Path, required=True, help="TFDS directory to write the code dataset to")
    p.add_argument("--name", default=None, help="dataset name (default: <data name>_codes)")
    p.add_argument("--chunk", type=int, default=64, help="frames encoded per device call")
    p.add_argument("--process_index", type=int, default=None,
                   help="this process's share: episodes i with i %% count == index (default: jax.process_index())")
    p.add_argument("--process_count", type=int, default=None,
                   help="number of processes sharing the work (default: jax.process_count())")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() (env-configured) for the index and count")
    args = p.parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    try:
        meta = encode_dataset(args.vqgan, args.data, args.out, args.name, args.chunk,
                              args.process_index, args.process_count)
    except (UserError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if meta is None:
        print(f"wrote this process's share under {args.out}; process 0 assembles the dataset")
        return 0
    if meta.num_actions_inferred:
        print(f"note: {args.data} does not name its action set: num_actions={meta.num_actions} inferred "
              f"from the data (largest action + 1)")
    print(f"wrote {meta.name} to {args.out}: {meta.num_examples} episodes, codes {meta.frame_shape}, "
          f"vocabulary {meta.vocab_size}, {meta.describe_actions()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
