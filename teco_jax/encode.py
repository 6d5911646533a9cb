"""Pre-encode a video dataset into VQ-GAN code indices, once, so TECO trains on codes.

    python -m teco_jax.encode --vqgan runs/vqgan --data runs/quickstart/maze_tfds --out runs/maze_codes

--data is a TFDS directory (teco_jax.data.build) or an episode root in the authors'
layout (ROOT/{train,test}/**/*.npz or .mp4). The output is a TFDS array_record dataset
with `codes` int16 (T, 16, 16), `actions`, and `pose`/extras when present; its
teco_meta.json names the VQ-GAN so TECO can find the code embeddings and decoder, and
carries the action set (count and names) of --data over.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from teco_jax.data import formats, tfds_io
from teco_jax.errors import UserError


def load_vqgan(workdir: Path | str):
    """The VQ-GAN of a training workdir (config.json + latest checkpoint), or of a bundle
    directory (teco_jax.bundle, e.g. checkpoints/maze_smooth)."""
    from teco_jax import bundle
    from teco_jax.loading import load_model

    if bundle.is_bundle(workdir):
        return bundle.load_vqgan(workdir)
    model, config = load_model(workdir)
    if config.task != "vqgan":
        raise ValueError(f"{workdir} holds a {config.task!r} run, not a VQ-GAN")
    return model.vqgan, config


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


def _episodes(data: Path, split: str, num_actions: int | None = None,
              num_actions_from: str = "") -> tuple[Iterator[tuple[str, dict]], int]:
    """(episode iterator, number of episodes) from a TFDS dir or an episode root (whose
    episodes are checked against num_actions)."""
    try:
        meta, sources = tfds_io.load(data)
    except FileNotFoundError:
        files = formats.find_episodes(data, split)
        return ((str(p.relative_to(data / split)), formats.read_episode(p, num_actions, num_actions_from))
                for p in files), len(files)
    if split not in sources:
        return iter(()), 0
    src = sources[split]

    def gen():
        for i in range(len(src)):
            ep = dict(src[i])
            eid = ep.pop("episode_id")
            yield (eid.decode() if isinstance(eid, bytes) else str(eid)), ep

    return gen(), len(src)


def splits_of(data: Path) -> list[str]:
    try:
        _, sources = tfds_io.load(data)
        return [s for s in formats.SPLITS if s in sources]
    except FileNotFoundError:
        return [s for s in formats.SPLITS if (data / s).is_dir()]


def action_set_of(data: Path) -> tuple[int | None, tuple[str, ...], str]:
    """(num_actions, action names, where the count comes from) of --data: a TFDS dataset's
    metadata (None when its count was inferred: inferred again), or an episode root's meta.json."""
    try:
        meta = tfds_io.load(data)[0]
    except FileNotFoundError:
        return formats.action_set(data)
    return (None if meta.num_actions_inferred else meta.num_actions), meta.action_names, ""


def encode_dataset(vqgan_dir: Path, data: Path, out: Path, name: str | None = None, chunk: int = 64) -> tfds_io.DatasetMeta:
    vqgan, vq_config = load_vqgan(vqgan_dir)
    encoder = Encoder(vqgan, chunk)
    num_actions, action_names, num_actions_from = action_set_of(data)
    splits = splits_of(data)
    if not splits:
        raise formats.EpisodeError(f"{data}: no train/ or test/ split to encode")
    iters, total = {}, 0
    for s in splits:
        it, n = _episodes(data, s, num_actions, num_actions_from)
        iters[s], total = it, total + n
    bar = tqdm(total=total, unit="ep", desc=f"encode {data}")
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

    meta = tfds_io.write_dataset(out, name or f"{tfds_io.default_name(Path(data))}_codes",
                                 {s: encoded(it) for s, it in iters.items()}, num_actions=num_actions,
                                 source=str(data), vocab_size=int(vq_config.model.codebook_size),
                                 vqgan=str(Path(vqgan_dir).absolute()), action_names=action_names)
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"encoded {frames[0]} frames in {elapsed:.1f}s: {frames[0] / elapsed:.0f} frames/s")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vqgan", type=Path, required=True, help="workdir of a trained VQ-GAN")
    p.add_argument("--data", type=Path, required=True, help="TFDS dataset dir or episode root to encode")
    p.add_argument("--out", type=Path, required=True, help="TFDS directory to write the code dataset to")
    p.add_argument("--name", default=None, help="dataset name (default: <data name>_codes)")
    p.add_argument("--chunk", type=int, default=64, help="frames encoded per device call")
    args = p.parse_args(argv)
    try:
        meta = encode_dataset(args.vqgan, args.data, args.out, args.name, args.chunk)
    except (UserError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if meta.num_actions_inferred:
        print(f"note: {args.data} does not name its action set: num_actions={meta.num_actions} inferred "
              f"from the data (largest action + 1)")
    print(f"wrote {meta.name} to {args.out}: {meta.num_examples} episodes, codes {meta.frame_shape}, "
          f"vocabulary {meta.vocab_size}, {meta.describe_actions()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
