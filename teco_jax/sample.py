"""Sample long videos from a trained TECO, continuing test episodes of a raw-frame dataset.

    python -m teco_jax.sample --checkpoint runs/teco --data data/maze_tfds \\
        --context 144 --length 300 --num 64 --out runs/teco/samples_action_144

Takes the first --length frames of the first --num episodes of --split, keeps the first
--context frames as context and generates the rest, with the episodes' actions
(--no-actions: unconditional, the null action). --data is a raw-frame TFDS dataset
(what `python -m teco_jax.data.build` writes).

Writes to --out, in the TECO authors' layout (their scripts/compute_metrics.py reads
it; it takes the context length from the folder name's last `_<number>`):
    data_<i>.npz        one file per batch i: real, fake  uint8 (n, length, H, W, 3);
                        the context frames are the real ones in both
    video_<j>.mp4/.gif  per video j: real | generated | absolute error side by side;
                        context frames framed green, generated frames framed red
Prints the generation speed in frames/s at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from teco_jax import rollout as rollout_lib
from teco_jax.errors import UserError

GREEN = np.array([0, 200, 0], np.uint8)
RED = np.array([220, 0, 0], np.uint8)


# ----------------------------------------------------------------- data

def load_episodes(data_dir: Path | str, split: str, num: int, length: int):
    """(video uint8 (num, length, H, W, 3), actions int32 (num, length)) of the first `num`
    episodes of `split`, cut to their first `length` frames."""
    from teco_jax.data import tfds_read  # deferred: tensorflow_datasets takes seconds to import

    meta, source = tfds_read.load_frame_split(data_dir, split)
    if num > len(source):
        raise ValueError(f"--num {num} is more than the {len(source)} episodes of {meta.name}/{split}")
    if length > meta.min_length:
        raise ValueError(f"--length {length} is longer than the shortest episode of {meta.name} "
                         f"({meta.min_length} frames)")
    videos, actions = [], []
    for i in range(num):
        ep = source[i]
        videos.append(np.asarray(ep["video"][:length], np.uint8))
        actions.append(np.asarray(ep["actions"][:length], np.int32))
    return np.stack(videos), np.stack(actions)


def read_model_config(checkpoint: Path | str):
    """The TECO config of a workdir (config.json) or bundle (teco.json), or None if there is none
    (loading the model then says what is missing). Reads no parameters."""
    import json

    import ml_collections

    path = Path(checkpoint)
    for name in ("teco.json", "config.json"):
        if (path / name).is_file():
            try:
                return ml_collections.ConfigDict(json.loads((path / name).read_text()))
            except json.JSONDecodeError:
                return None
    return None


def check_model_actions(checkpoint: Path | str, data_dir: Path | str) -> None:
    """UserError, before the model is loaded, if the dataset's action set is not the checkpoint's
    (model.num_actions); models trained without actions take any dataset."""
    from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

    config = read_model_config(checkpoint)
    if config is None or not config.model.get("use_actions", True):
        return
    tfds_meta.check_actions(tfds_meta.load_meta(data_dir), int(config.model.num_actions),
                            f"model.num_actions of {checkpoint}", data_dir=data_dir)


# ----------------------------------------------------------------- pictures

def framed(frames_THW3: np.ndarray, color_T3: np.ndarray, width: int = 2) -> np.ndarray:
    """Each frame inside a border of `width` pixels of its color: (T, H + 2w, W + 2w, 3)."""
    t, h, w, _ = frames_THW3.shape
    out = np.broadcast_to(color_T3[:, None, None, :], (t, h + 2 * width, w + 2 * width, 3)).copy()
    out[:, width:width + h, width:width + w] = frames_THW3
    return out


def comparison(real_THW3: np.ndarray, fake_THW3: np.ndarray, context: int, scale: int = 1) -> np.ndarray:
    """real | generated | |real - generated| per frame, each panel framed green for context
    frames and red for generated ones; (T, H', W', 3) with even H', W' (for mp4)."""
    t = len(real_THW3)
    colors = np.where((np.arange(t) < context)[:, None], GREEN, RED)
    error = np.abs(real_THW3.astype(np.int16) - fake_THW3.astype(np.int16)).astype(np.uint8)
    row = np.concatenate([framed(x, colors) for x in (real_THW3, fake_THW3, error)], axis=2)
    if scale > 1:
        row = row.repeat(scale, axis=1).repeat(scale, axis=2)
    pad_h, pad_w = row.shape[1] % 2, row.shape[2] % 2
    return np.pad(row, ((0, 0), (0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else row


def write_videos(path_stem: Path, frames_THW3: np.ndarray, fps: float, gif_colors: int = 256) -> None:
    """path_stem.mp4 (H.264) and path_stem.gif (looping, `gif_colors` colors per frame)."""
    import imageio.v2 as imageio
    from PIL import Image

    with warnings.catch_warnings():  # ffmpeg is started by fork + exec, which is safe
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        imageio.mimwrite(path_stem.with_suffix(".mp4"), frames_THW3, fps=fps, macro_block_size=1)
    images = [Image.fromarray(f).quantize(colors=gif_colors, method=Image.Quantize.MEDIANCUT) for f in frames_THW3]
    images[0].save(path_stem.with_suffix(".gif"), save_all=True, append_images=images[1:],
                   duration=round(1000.0 / fps), loop=0)


# ----------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="TECO training workdir (config.json + checkpoints/) or a bundle (teco_jax.bundle)")
    p.add_argument("--data", type=Path, required=True, help="raw-frame TFDS dataset dir (teco_jax.data.build)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--context", type=int, default=144, help="context frames given to the model (<= its data.seq_len)")
    p.add_argument("--length", type=int, default=300, help="frames per video, context included")
    p.add_argument("--num", type=int, default=8, help="number of videos (the first NUM episodes of the split)")
    p.add_argument("--batch_size", type=int, default=8, help="videos generated at once")
    p.add_argument("--split", default="test", help="dataset split to take the episodes from")
    p.add_argument("--no-actions", dest="actions", action="store_false",
                   help="unconditional: ignore the episodes' actions (the null action)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    rollout_lib.add_sampler_flags(p)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--vqgan", type=Path, default=None, help="VQ-GAN workdir (default: the one TECO records)")
    p.add_argument("--videos", type=int, default=None, help="write mp4/GIF for only the first VIDEOS videos")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the mp4 and GIF files")
    p.add_argument("--scale", type=int, default=1, help="enlarge the mp4/GIF frames by this integer factor")
    p.add_argument("--gif_colors", type=int, default=256, help="palette size of the GIFs (fewer: smaller files)")
    args = p.parse_args(argv)
    if not 2 <= args.gif_colors <= 256:
        p.error("--gif_colors must be in [2, 256]")
    for name in ("context", "length", "num", "batch_size", "fps", "scale"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.context > args.length:
        p.error(f"--context {args.context} is more than --length {args.length}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import
    from teco_jax.world_model import WorldModel  # deferred: arguments are checked before the model stack loads

    try:
        if args.actions:
            check_model_actions(args.checkpoint, args.data)
        real, actions = load_episodes(args.data, args.split, args.num, args.length)
        wm = WorldModel.load(args.checkpoint, step=args.step, vqgan_dir=args.vqgan)
        if args.context > wm.window:
            raise UserError(f"--context {args.context} is more than the model's window of "
                            f"data.seq_len={wm.window} frames")
        if args.actions and not wm.config.model.use_actions:
            raise UserError(f"{args.checkpoint} was trained without actions: add --no-actions")
        if args.actions:
            tfds_meta.check_action_values(actions, wm.num_actions, f"model.num_actions of {args.checkpoint}", args.data)
    except (UserError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sampler = rollout_lib.sampler_from_args(wm.sampler, args)
    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    num_videos = args.num if args.videos is None else min(args.videos, args.num)
    bs, times = min(args.batch_size, args.num), []
    bar = tqdm(total=args.num, unit="video", desc="sample", dynamic_ncols=True)
    for i, start in enumerate(range(0, args.num, bs)):
        real_b, act_b = real[start:start + bs], actions[start:start + bs]
        n = len(real_b)
        if n < bs:  # pad the last batch so the rollout keeps its compiled shape
            real_b = np.concatenate([real_b, np.repeat(real_b[-1:], bs - n, axis=0)])
            act_b = np.concatenate([act_b, np.repeat(act_b[-1:], bs - n, axis=0)])
        t0 = time.perf_counter()
        try:
            fake_b = wm.rollout(real_b[:, :args.context], act_b if args.actions else None, args.length,
                                key=jax.random.fold_in(key, i), sampler=sampler)
        except ValueError as e:
            bar.close()
            print(f"error: {e}", file=sys.stderr)
            return 1
        times.append(time.perf_counter() - t0)
        real_b, fake_b = real_b[:n], fake_b[:n]
        np.savez_compressed(args.out / f"data_{i}.npz", real=real_b, fake=fake_b)
        for j in range(n):
            if start + j < num_videos:
                write_videos(args.out / f"video_{start + j:04d}",
                             comparison(real_b[j], fake_b[j], args.context, args.scale), args.fps, args.gif_colors)
        bar.update(n)
        bar.set_postfix(frames_per_s=f"{n * (args.length - args.context) / times[-1]:.1f}")
    bar.close()
    generated = args.length - args.context
    total = args.num * generated
    msg = (f"generated {total} frames ({args.num} videos x {generated}) in {sum(times):.1f}s: "
           f"{total / sum(times):.1f} frames/s including compilation")
    if len(times) > 1:
        rest = (args.num - bs) * generated
        msg += f", {rest / sum(times[1:]):.1f} frames/s after the first batch"
    print(msg)
    print(f"wrote {len(times)} npz file(s) and {num_videos} mp4/GIF pair(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
