"""One 3x3 convolution and its gradients on each path of teco_jax/nn/conv.py: XLA's direct
convolution, per-tap matmuls for the kernel gradient, Winograd F(2x2, 3x3).

    python bench/conv_grad.py [--batch 300] [--reps 3] [--shapes 16:256:256,16:512:256,8:512:512]

For the TECO encoder's convolution shapes at B*T frames (16x16 maps 256->256 and 512->256,
8x8 maps 512->512; --shapes takes others as map:in:out), prints the best-of-`reps` seconds
and GFLOP/s of: the input gradient, the kernel gradient and both (each with its forward
pass), for each path, next to the dense float32 matmul FLOP/s measured in the same process,
and the largest relative difference
between each path's gradients and XLA's. GFLOP/s count the direct convolution's FLOPs (the
work done, not the FLOPs a path spends on it), so Winograd's are effective rates and can
exceed the matmul's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = "16:256:256,16:512:256,8:512:512"  # H = W : in channels : out channels


def best_seconds(f, *args, reps: int) -> float:
    import jax

    jax.block_until_ready(f(*args))  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=300, help="frames per convolution (B*T; default: the paper's T)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per measurement (the best is printed)")
    p.add_argument("--shapes", default=SHAPES, help="comma-separated map:in:out (map = H = W), default " + SHAPES)
    args = p.parse_args()
    if args.batch < 1 or args.reps < 1:
        p.error("--batch and --reps must be >= 1")
    try:
        shapes = [tuple(int(v) for v in s.split(":")) for s in args.shapes.split(",")]
        assert all(len(s) == 3 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        p.error(f"--shapes {args.shapes!r}: expected map:in:out,... with positive integers, e.g. {SHAPES}")
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from bench.teco_step import matmul_flops
    from teco_jax.nn import conv

    print(f"batch {args.batch}, best of {args.reps}; f32 matmul {matmul_flops() / 1e9:.0f} GFLOP/s", flush=True)
    print(f"{'map':>5} {'C->D':>9} {'path':>8} {'dx s':>7} {'GF/s':>6} {'dW s':>7} {'GF/s':>6} {'both s':>7} {'GF/s':>6} "
          f"{'vs XLA':>9}")
    for h, c, d in shapes:
        x = jax.random.normal(jax.random.key(0), (args.batch, h, h, c))
        w = jax.random.normal(jax.random.key(1), (3, 3, c, d)) * 0.02
        dn = nnx.nn.linear._conv_dimension_numbers(x.shape)
        flops = 2 * args.batch * h * h * 9 * c * d  # one pass (forward, dx or dW)
        grads = {}
        for path in ("xla", "taps", "winograd"):
            conv.set_impl(path)  # traced anew with this path

            def loss(x, w):
                return jnp.sum(conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) ** 2)

            cells = []
            for argnums in ((0,), (1,), (0, 1)):
                s = best_seconds(jax.jit(jax.grad(loss, argnums=argnums)), x, w, reps=args.reps)
                cells.append(f"{s:7.3f} {flops * (1 + len(argnums)) / s / 1e9:6.1f}")
            grads[path] = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
            diff = max(float(jnp.abs(a - b).max() / jnp.abs(b).max()) for a, b in zip(grads[path], grads["xla"]))
            print(f"{h}x{h} {c:>4}->{d:<4} {path:>8} " + " ".join(cells) + f" {diff:9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
