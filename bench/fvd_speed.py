"""I3D feature throughput for FVD (videos/s), and the cost of the Fréchet distance.

    python bench/fvd_speed.py [--videos 8] [--frames 16] [--size 64] [--batch-size 4]

Random uint8 videos of size x size pixels go through `eval.fvd.I3DFeatures` (resize to
224x224, I3D Kinetics-400 logits, HIGHEST precision). The first batch (compilation) is timed
apart; the throughput is over all `--videos` after it. Then `frechet_distance` is timed on
random 400-d features of `--fd-videos` videos per set (float64 NumPy/SciPy sqrtm).
"""

import argparse
import time

import jax
import numpy as np

from eval.fvd import NUM_FEATURES, I3DFeatures, frechet_distance


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="input frame size before the resize to 224")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--fd-videos", type=int, default=256)
    args = p.parse_args()

    dev = jax.devices()[0]
    print(f"device: {jax.device_count()} x {dev.platform} ({dev.device_kind})", flush=True)
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (args.videos, args.frames, args.size, args.size, 3), dtype=np.uint8)
    ext = I3DFeatures(batch_size=args.batch_size)

    t = time.perf_counter()
    ext(videos[: args.batch_size])
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    feats = ext(videos)
    dt = time.perf_counter() - t
    assert feats.shape == (args.videos, NUM_FEATURES) and np.isfinite(feats).all()
    print(f"I3D features: {args.videos / dt:8.3f} videos/s  {args.videos * args.frames / dt:8.1f} frames/s  "
          f"({args.videos} videos x {args.frames} frames, {args.size}x{args.size} -> 224x224, "
          f"batch {args.batch_size}; first batch incl. compile {compile_s:.1f} s)", flush=True)

    a = rng.normal(size=(args.fd_videos, NUM_FEATURES))
    b = rng.normal(size=(args.fd_videos, NUM_FEATURES)) * 1.1 + 0.1
    t = time.perf_counter()
    d = frechet_distance(a, b)
    print(f"frechet_distance: {time.perf_counter() - t:.3f} s for {args.fd_videos} vs {args.fd_videos} "
          f"videos x {NUM_FEATURES} features (value {d:.2f})", flush=True)


if __name__ == "__main__":
    main()
