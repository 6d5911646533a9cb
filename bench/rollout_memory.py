"""Rollout memory stays flat with length: a 1000-frame rollout from a trained checkpoint.

    python bench/rollout_memory.py [--checkpoint runs/teco_tiny] [--lengths 300,1000] [--context 16]

Runs each length in its own process (WorldModel.load, then one batched rollout of
`length` frames from `context` random context frames with random actions, decoded to
pixels) and reports its resident memory before the rollout call and at its peak
(resource.getrusage ru_maxrss; both include JAX, the models and compilation, and the
rollout call compiles its program), and XLA's memory analysis of the compiled
rollout program: temp (the scan's working memory: window, KV cache, MaskGIT state),
arguments and output (the model state, and the actions / codes of all frames). With a
fixed-size window only what is per frame grows with the length: the actions among the
arguments, the codes in the output, and in temp the scan's stacked per-frame codes and
keys; everything else is identical.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _mib(n: float) -> str:
    return f"{n / 2**20:8.2f} MiB"


def _current_rss() -> int:
    """Resident memory of this process now, bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def worker(checkpoint: str, length: int, context: int, batch: int, seed: int) -> dict:
    """One rollout of `length` frames in this process; returns its measurements."""
    import jax

    from teco_jax import rollout
    from teco_jax.world_model import WorldModel

    wm = WorldModel.load(checkpoint)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, context) + wm.frame_shape, dtype=np.uint8)
    actions = rng.integers(0, wm.num_actions, (batch, length)).astype(np.int32)
    codes = wm.encode(frames)
    key = jax.random.key(seed)
    compiled = rollout.rollout.lower(wm.teco, wm.vq_embeddings, codes, actions, key, num_frames=length,
                                     window=wm.window, sampler=wm.sampler).compile()
    analysis = compiled.memory_analysis()
    rss_before = _current_rss()
    start = time.perf_counter()
    video = wm.rollout(frames, actions, length, key=key)
    elapsed = time.perf_counter() - start
    assert video.shape == (batch, length) + wm.frame_shape
    return {"length": length, "window": wm.window, "seconds": elapsed,
            "rss_before": rss_before,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
            "temp": analysis.temp_size_in_bytes, "arguments": analysis.argument_size_in_bytes,
            "output": analysis.output_size_in_bytes, "code": analysis.generated_code_size_in_bytes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/teco_tiny", help="TECO workdir (its VQ-GAN is found from it)")
    p.add_argument("--lengths", default="300,1000", help="comma-separated rollout lengths (frames)")
    p.add_argument("--context", type=int, default=16, help="context frames")
    p.add_argument("--batch", type=int, default=1, help="videos per rollout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # internal: one length
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.checkpoint, args.worker, args.context, args.batch, args.seed)))
        return
    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        cmd = [sys.executable, __file__, "--worker", str(length), "--checkpoint", args.checkpoint,
               "--context", str(args.context), "--batch", str(args.batch), "--seed", str(args.seed)]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"the {length}-frame run failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.checkpoint}: window {rows[0]['window']} frames, context {args.context}, batch {args.batch}; "
          f"one process per length")
    print(f"{'frames':>7} {'RSS before':>12} {'peak RSS':>12} {'difference':>12} {'temp':>12} {'arguments':>12} "
          f"{'output':>12} {'rollout':>9}")
    for r in rows:
        print(f"{r['length']:>7} {_mib(r['rss_before'])} {_mib(r['peak_rss'])} "
              f"{_mib(r['peak_rss'] - r['rss_before'])} {_mib(r['temp'])} "
              f"{_mib(r['arguments'])} {_mib(r['output'])} {r['seconds']:7.1f} s  ({r['length'] - args.context} "
              f"frames generated, {args.batch * (r['length'] - args.context) / r['seconds']:.1f} frames/s "
              f"incl. compilation)")
    first, last = rows[0], rows[-1]
    grow = {k: last[k] - first[k] for k in ("peak_rss", "arguments", "output", "temp")}
    line = (f"{last['length']} vs {first['length']} frames: peak RSS {grow['peak_rss'] / 2**20:+.1f} MiB; "
            f"arguments {grow['arguments']:+d} B (the actions); output {grow['output']:+d} B (the extra frames' "
            f"codes); temp {grow['temp']:+d} B")
    if grow["output"]:
        line += f" = {grow['temp'] / grow['output']:.2f} x the output growth (the scan's per-frame outputs and keys)"
    print(line)


if __name__ == "__main__":
    main()
