"""Input pipeline throughput: batches/s of 32 clips x 300 frames x 64x64x3 (target: >= 10).

    python bench/pipeline_throughput.py [--episodes 64] [--batches 30]

Writes a synthetic dataset (random frames, so nothing compresses) to a temporary
TFDS directory, then times the grain pipeline (random clips, shuffling, batching,
prefetch) for several read-thread counts, in one run so the ratios are comparable.
"""

import argparse
import tempfile
import time

import numpy as np

from teco_jax.data import pipeline, tfds_write


def synthetic_episodes(n, length, size, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"synthetic_{i}", {
            "video": rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
            "actions": rng.integers(0, 6, (length,), dtype=np.int32),
            "pose": rng.normal(size=(length, 3)).astype(np.float32),
        }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--seq_len", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2, 4])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        tfds_write.write_dataset(tmp, "bench", {"train": synthetic_episodes(args.episodes, args.length, args.size)},
                                 num_actions=6)
        mb = args.episodes * args.length * args.size ** 2 * 3 / 2 ** 20
        print(f"wrote {args.episodes} episodes ({mb:.0f} MiB) in {time.perf_counter() - t:.1f}s")
        batch_mb = args.batch * args.seq_len * args.size ** 2 * 3 / 2 ** 20
        for threads in args.threads:
            ds, _ = pipeline.make_dataset(tmp, "train", seq_len=args.seq_len, batch_size=args.batch,
                                          read_threads=threads, prefetch=max(threads, 1) * 2)
            it = iter(ds)
            next(it)  # warm-up: file handles, first prefetch
            t = time.perf_counter()
            for _ in range(args.batches):
                batch = next(it)
            dt = time.perf_counter() - t
            assert batch["video"].shape == (args.batch, args.seq_len, args.size, args.size, 3)
            print(f"read_threads={threads}: {args.batches / dt:6.1f} batches/s "
                  f"({args.batches * batch_mb / dt:7.0f} MiB/s, {args.batch * args.seq_len * args.batches / dt:8.0f} frames/s)")


if __name__ == "__main__":
    main()
