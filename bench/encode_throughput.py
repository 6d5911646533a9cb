"""VQ-GAN encode throughput (frames/s) for the tiny and full DMLab presets, random weights.

    python bench/encode_throughput.py [--frames 512] [--chunk 64]

This is the cost of `python -m teco_jax.encode` per frame (its jitted chunked encoder),
excluding file I/O.
"""

import argparse
import time

import jax
import numpy as np
from flax import nnx

from teco_jax import config_base
from teco_jax.encode import Encoder
from teco_jax.models.vqgan import VQGAN


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--presets", nargs="+", default=["tiny", ""])
    args = p.parse_args()
    video = np.random.default_rng(0).integers(0, 256, (args.frames, 64, 64, 3), dtype=np.uint8)
    for preset in args.presets:
        cfg = config_base.from_file(f"configs/vqgan_dmlab.py:{preset}")
        encoder = Encoder(VQGAN(cfg.model, rngs=nnx.Rngs(0)), args.chunk)
        encoder(video[: args.chunk])  # compile
        t = time.perf_counter()
        codes = encoder(video)
        dt = time.perf_counter() - t
        assert codes.shape == (args.frames, 16, 16)
        print(f"vqgan_dmlab:{preset or 'full'}  {args.frames / dt:8.1f} frames/s  "
              f"(chunk {args.chunk}, {jax.device_count()} {jax.devices()[0].platform} device)", flush=True)


if __name__ == "__main__":
    main()
