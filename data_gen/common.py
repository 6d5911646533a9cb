"""Plumbing shared by the dataset generators: seeds, splits, npz writing, the CLI.

A generator is described by a `Generator`: a function that renders a batch of
episodes from their integer seeds, plus optional per-episode statistics. This
module turns it into a command-line tool that writes the TECO authors' layout,

    OUT/train/ep_000000.npz, OUT/test/ep_000900.npz, ...  and OUT/meta.json

where every npz holds `video` uint8 (T, H, W, 3), `actions` int32 (T,), `pose`
float32 (T, 3) and whatever extra per-episode arrays the generator returns.
Each episode depends only on (seed, episode index), so a run can be split over
processes, interrupted and resumed: episodes already on disk are skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from data_gen.preview import contact_sheet_from_dir

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Generator:
    """What `run` needs to know about one generator.

    generate: (seeds uint32 (B,), config) -> dict of arrays with a leading B axis;
      it must contain `video` (B,T,H,W,3) uint8, `actions` (B,T) int32 and
      `pose` (B,T,3) float32. Episode b must depend on seeds[b] alone.
    summarize: optional, batch -> {stat name: (B,) float array}; the means over all
      episodes are printed at the end of a run and stored in meta.json.
    action_names: the discrete action set, in index order.
    """

    name: str
    generate: Callable[[np.ndarray, Any], Batch]
    action_names: tuple[str, ...]
    summarize: Callable[[Batch], Mapping[str, np.ndarray]] | None = None


def episode_seeds(seed: int, indices: Sequence[int]) -> np.ndarray:
    """Independent uint32 seeds for episodes `indices` of a run seeded with `seed`."""
    return np.array(
        [np.random.SeedSequence([seed, int(i)]).generate_state(1)[0] for i in indices],
        dtype=np.uint32,
    )


def split_of(index: int, num_episodes: int, test_fraction: float) -> str:
    """Episodes [0, n_train) go to train, the rest to test."""
    num_test = int(round(num_episodes * test_fraction))
    return "train" if index < num_episodes - num_test else "test"


def episode_path(out: Path, index: int, num_episodes: int, test_fraction: float) -> Path:
    return out / split_of(index, num_episodes, test_fraction) / f"ep_{index:06d}.npz"


def save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray], compress: bool = False) -> None:
    """Write an npz so that a crash never leaves a half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    os.replace(tmp, path)


def _check_batch(batch: Batch, n: int) -> None:
    for key, ndim, dtype in (("video", 5, np.uint8), ("actions", 2, np.int32), ("pose", 3, np.float32)):
        if key not in batch:
            raise KeyError(f"generator returned no {key!r}")
        arr = batch[key]
        if arr.ndim != ndim or arr.shape[0] != n or arr.dtype != dtype:
            raise ValueError(f"generator returned {key} {arr.shape} {arr.dtype}; "
                             f"expected {ndim} dims, leading {n}, dtype {np.dtype(dtype)}")


def _render_and_write(gen: Generator, config: Any, indices: Sequence[int], paths: Sequence[Path],
                      seed: int, compress: bool) -> dict[str, list[float]]:
    """Worker body: render a chunk of episodes, write them, return their statistics."""
    batch = gen.generate(episode_seeds(seed, indices), config)
    _check_batch(batch, len(indices))
    for b, path in enumerate(paths):
        save_npz_atomic(path, {k: v[b] for k, v in batch.items()}, compress)
    stats = gen.summarize(batch) if gen.summarize else {}
    return {k: [float(x) for x in v] for k, v in stats.items()}


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, required=True, help="number of episodes to write (train + test)")
    parser.add_argument("--out", type=Path, required=True, help="output root; writes OUT/{train,test}/ep_*.npz")
    parser.add_argument("--seed", type=int, default=0, help="run seed; episode i depends only on (seed, i)")
    parser.add_argument("--test_fraction", type=float, default=0.1,
                        help="fraction of episodes (the last ones) written to test/")
    parser.add_argument("--chunk", type=int, default=8, help="episodes rendered together in one batch")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering chunks in parallel")
    parser.add_argument("--compress", action="store_true", help="write compressed npz (smaller, slower)")
    parser.add_argument("--preview", type=Path, default=None,
                        help="also write a PNG contact sheet of the first episodes to this path")


def run(gen: Generator, config: Any, args: argparse.Namespace) -> dict[str, float]:
    """Write a dataset as `args` asks (see add_common_flags); returns the mean statistics."""
    if args.episodes < 1:
        raise SystemExit(f"--episodes must be at least 1, got {args.episodes}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise SystemExit(f"--test_fraction must be in [0, 1), got {args.test_fraction}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    meta = {"generator": gen.name, "seed": args.seed, "episodes": args.episodes,
            "test_fraction": args.test_fraction, "num_actions": len(gen.action_names),
            "action_names": list(gen.action_names), "config": _jsonable(config)}
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        keep = {k: old.get(k) for k in ("generator", "seed", "episodes", "test_fraction", "config")}
        if keep != {k: meta[k] for k in keep}:
            raise SystemExit(f"{out} already holds a dataset written with other settings "
                             f"({meta_path}); choose another --out or delete it")

    todo = [i for i in range(args.episodes)
            if not episode_path(out, i, args.episodes, args.test_fraction).exists()]
    chunks = [todo[s:s + args.chunk] for s in range(0, len(todo), args.chunk)]
    stats: dict[str, list[float]] = {}
    frames = 0
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="ep", desc=f"{gen.name} -> {out}", dynamic_ncols=True)
    if len(todo) < args.episodes:
        bar.write(f"resuming: {args.episodes - len(todo)} episodes already on disk are kept")

    def collect(chunk: Sequence[int], result: dict[str, list[float]], num_frames: int) -> None:
        nonlocal frames
        for k, v in result.items():
            stats.setdefault(k, []).extend(v)
        frames += num_frames
        bar.update(len(chunk))
        bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - start):.0f}")

    jobs = [(c, [episode_path(out, i, args.episodes, args.test_fraction) for i in c]) for c in chunks]
    if args.workers <= 1:
        for chunk, paths in jobs:
            result = _render_and_write(gen, config, chunk, paths, args.seed, args.compress)
            collect(chunk, result, len(chunk) * _episode_length(config))
    else:
        ctx = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            pending = {pool.submit(_render_and_write, gen, config, c, p, args.seed, args.compress): c
                       for c, p in jobs}
            for fut in futures.as_completed(pending):
                collect(pending[fut], fut.result(), len(pending[fut]) * _episode_length(config))
    bar.close()

    means = {k: float(np.mean(v)) for k, v in stats.items()}
    if means:
        meta["stats_of_this_run"] = means
    meta_path.write_text(json.dumps(meta, indent=2))
    elapsed = time.perf_counter() - start
    if todo:
        print(f"wrote {len(todo)} episodes ({frames} frames) in {elapsed:.1f}s: "
              f"{frames / elapsed:.0f} frames/s")
    for k, v in means.items():
        print(f"{k}: {v:.4f}")
    if args.preview is not None:
        contact_sheet_from_dir(out, args.preview)
        print(f"contact sheet: {args.preview}")
    return means


def _episode_length(config: Any) -> int:
    return int(getattr(config, "episode_length"))


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(config).items()}
    if isinstance(config, (list, tuple)):
        return [_jsonable(v) for v in config]
    if isinstance(config, dict):
        return {k: _jsonable(v) for k, v in config.items()}
    if isinstance(config, np.generic):
        return config.item()
    return config
