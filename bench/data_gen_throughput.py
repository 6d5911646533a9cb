"""Dataset generator throughput (targets on a 2-core CPU):
maze 64x64 >= 1500 frames/s; voxel 128x128 >= 100 frames/s and 64x64 >= 400 frames/s.

    python bench/data_gen_throughput.py [--episodes 16] [--workers 1 2]

Times `generate` (world + agent + rendering) end to end on fresh seeds, after one
warm-up batch (JIT compilation), with 1 and 2 worker processes.
"""

import argparse
import concurrent.futures as futures
import multiprocessing
import time

import numpy as np

from data_gen import maze, voxel
from data_gen.common import episode_seeds

CASES = {
    "maze 64x64": (maze.GENERATOR, maze.MazeConfig(resolution=64)),
    "voxel 64x64": (voxel.GENERATOR, voxel.VoxelConfig(resolution=64)),
    "voxel 128x128": (voxel.GENERATOR, voxel.VoxelConfig(resolution=128)),
}


def _work(name: str, seeds: np.ndarray) -> int:
    gen, cfg = CASES[name]
    batch = gen.generate(seeds, cfg)
    return int(batch["video"].shape[0] * batch["video"].shape[1])


def measure(name: str, episodes: int, chunk: int, workers: int) -> float:
    seeds = episode_seeds(1234, range(episodes))
    chunks = [seeds[i:i + chunk] for i in range(0, episodes, chunk)]
    if workers == 1:
        _work(name, seeds[:1])  # compile
        t = time.perf_counter()
        frames = sum(_work(name, c) for c in chunks)
        return frames / (time.perf_counter() - t)
    ctx = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_work, [name] * workers, [seeds[:1]] * workers))  # compile in every worker
        t = time.perf_counter()
        frames = sum(pool.map(_work, [name] * len(chunks), chunks))
        return frames / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cases", nargs="+", default=list(CASES))
    args = p.parse_args()
    for name in args.cases:
        gen, cfg = CASES[name]
        for w in args.workers:
            fps = measure(name, args.episodes, args.chunk, w)
            print(f"{name:<14} workers={w}: {fps:8.0f} frames/s  "
                  f"({args.episodes} episodes x {cfg.episode_length} frames)", flush=True)


if __name__ == "__main__":
    main()
