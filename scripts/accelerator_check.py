"""Check an accelerator: the paper-size TECO's train step and a 1,000-frame rollout.

    python scripts/accelerator_check.py [--config configs/teco_dmlab.py] [--dtype bfloat16]
        [--batch_sizes 1,8,32] [--steps 5] [--rollout_frames 1000] [--out results.json]
    python scripts/accelerator_check.py --cpu_small    # tiny shapes: about a minute on a 2-core CPU

With random weights and random codes (no data, no checkpoint), on the first device:

1. The train step (bench/teco_step.py's functions: the Trainer's jitted step, compiled with
   `lower().compile()`) at each batch size, in increasing order, stopping at the first that
   runs out of device memory (reported as OOM). Per batch: compile seconds, the median of
   `--steps` timed steps after one warm-up step (ms/step), tokens/s (VQ-GAN codes:
   batch x seq_len x the code grid, per second), FLOPs per step from XLA's cost analysis of
   the compiled step (`compiled.cost_analysis()["flops"]`: forward, backward and optimizer
   update as compiled, recomputation included; XLA counts a loop body once), achieved
   FLOP/s, MFU against the chip's dense bf16 peak (PEAK_BF16 below; n/a, with the reason,
   for a chip not in it unless --peak_flops is given), and the device's peak memory
   (`memory_stats()["peak_bytes_in_use"]`: the process's peak so far, which, the batches
   growing, is the current one's; n/a where the backend keeps no statistics, as on a CPU).
   JAX takes 75% of a GPU's memory for its pool by default: XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
   lets the largest batches use more before they count as OOM.
2. A rollout of `--rollout_frames` frames (teco_jax/rollout.py: `rollout.rollout`, codes only,
   no VQ-GAN decoding) from `--rollout_context` random context frames with the config's
   sampler: compile seconds, then generated frames per second of one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import teco_step  # noqa: E402
from teco_jax import rollout, trainer  # noqa: E402
from teco_jax.nn import conv  # noqa: E402

# Dense (no sparsity) bf16 FLOP/s per JAX device, from the vendors' data sheets. The first entry
# whose key is in the device's device_kind (case-insensitive) wins, so specific keys come first.
PEAK_BF16 = (
    ("H100 PCIe", "H100 PCIe", 756e12),
    ("H100 NVL", "H100 NVL", 835e12),
    ("GH200", "GH200", 989e12),
    ("H200 NVL", "H200 NVL", 835e12),
    ("H200", "H200 SXM", 989e12),
    ("H100", "H100 SXM", 989e12),
    ("A100", "A100", 312e12),
    ("TPU v4", "TPU v4", 275e12),
    ("TPU v5 lite", "TPU v5e", 197e12),
    ("TPU v5e", "TPU v5e", 197e12),
    ("TPU v5", "TPU v5p", 459e12),  # v5p reports device_kind "TPU v5"
    ("TPU v6 lite", "TPU v6e", 918e12),
)

FLOPS_SOURCE = ("XLA cost analysis of the compiled train step (compiled.cost_analysis()['flops']: "
                "forward, backward and optimizer update as compiled)")

# --cpu_small: the tiny preset made smaller still, with XLA's own convolutions (the path GPUs and
# TPUs take; the CPU's Winograd and per-tap kernels compile slower) and XLA's quick compile
# options of tests/conftest.py, so the whole check compiles and runs in about a minute on a
# 2-core CPU shared with other work (compiling is most of it).
FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
CPU_SMALL = {"config": "configs/teco_dmlab.py:tiny", "dtype": "float32", "batch_sizes": "1", "steps": 2,
             "rollout_frames": 24, "rollout_context": 4}
CPU_SMALL_OVERRIDES = {"data.seq_len": 8, "model.transformer.num_layers": 1, "model.maskgit.num_layers": 1,
                       "model.sampling.draft_steps": 2, "model.sampling.revise_steps": 2,
                       "model.sampling.revise_rounds": 1}


def peak_bf16(device_kind: str) -> tuple[float | None, str]:
    """The chip's dense bf16 FLOP/s and its name in PEAK_BF16, or None and why not."""
    for key, name, flops in PEAK_BF16:
        if key.lower() in device_kind.lower():
            return flops, name
    return None, f"no dense bf16 peak known for device kind {device_kind!r} (pass --peak_flops)"


def is_oom(error: Exception) -> bool:
    """Whether an error from compiling or running a step is XLA running out of device memory."""
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def peak_memory_bytes(device) -> int | None:
    """`peak_bytes_in_use` of the device's memory statistics; None where there are none."""
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement it
        return None
    return (stats or {}).get("peak_bytes_in_use")


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call from XLA's cost analysis of a compiled function (None if not given)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def step_trainer(spec: str, dtype: str, overrides: dict, workdir: str) -> trainer.Trainer:
    """The Trainer (random VQ-GAN, one device) whose step and parameters the check uses."""
    cfg = teco_step.step_config(spec, batch=1, dtype=dtype)
    return trainer.Trainer(trainer.config_replace(cfg, **overrides) if overrides else cfg, workdir)


def train_step(tr: trainer.Trainer, batch: int, steps: int, peak: float | None) -> dict:
    """Compile and time the train step at one batch size: one row of the table."""
    data, constants = teco_step.random_batch(tr, batch)
    with jax.set_mesh(tr.mesh):
        compiled, state, compile_s = teco_step.compile_step(tr, data, constants)
        state, _ = teco_step.run_step(compiled, state, data, constants)  # warm-up
        times = []
        for _ in range(steps):
            state, seconds = teco_step.run_step(compiled, state, data, constants)
            times.append(seconds)
    step_s = float(np.median(times))
    flops = compiled_flops(compiled)
    cfg = tr.config
    tokens = batch * cfg.data.seq_len * int(np.prod(cfg.model.vq_grid))
    return {"batch": batch, "oom": False, "compile_s": compile_s, "steps_s": times, "ms_per_step": 1e3 * step_s,
            "tokens_per_step": tokens, "tokens_per_s": tokens / step_s, "flops_per_step": flops,
            "flops_per_s": flops / step_s if flops else None,
            "mfu": flops / step_s / peak if flops and peak else None,
            "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
            "peak_memory_bytes": peak_memory_bytes(jax.devices()[0])}


def train_steps(tr: trainer.Trainer, batch_sizes: list[int], steps: int, peak: float | None) -> list[dict]:
    """train_step at each batch size in increasing order, up to and including the first OOM."""
    rows = []
    for batch in sorted(batch_sizes):
        try:
            rows.append(train_step(tr, batch, steps, peak))
        except Exception as e:  # noqa: BLE001 (any other error is raised again)
            if not is_oom(e):
                raise
            rows.append({"batch": batch, "oom": True, "error": str(e).strip().splitlines()[0][:300]})
        gc.collect()  # the step's buffers go before the next batch size
        print(format_row(rows[-1]), flush=True)
        if rows[-1]["oom"]:
            break
    return rows


def rollout_speed(tr: trainer.Trainer, frames: int, context: int, batch: int) -> dict:
    """Compile and run one `frames`-frame rollout (codes only) of the Trainer's model, with
    fresh random parameters and its random VQ-GAN's code embeddings."""
    m, window = tr.config.model, tr.config.data.seq_len
    if not 0 < context < frames:
        raise ValueError(f"--rollout_context {context} must be between 1 and --rollout_frames - 1 ({frames - 1})")
    codes = jax.random.randint(jax.random.key(2), (batch, context) + tuple(m.vq_grid), 0, m.vq_vocab)
    actions = jax.random.randint(jax.random.key(3), (batch, frames), 0, m.num_actions)
    key = jax.random.key(4)
    sampler = rollout.Sampler.from_config(m.sampling)
    with jax.set_mesh(tr.mesh):
        model = tr.model(tr.create_state())
        table = tr.device_constants()["vq_embeddings"]
        t0 = time.perf_counter()
        compiled = rollout.rollout.lower(model, table, codes, actions, key, num_frames=frames, window=window,
                                         sampler=sampler).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(model, table, codes, actions, key))
        seconds = time.perf_counter() - t0
    if out.shape != (batch, frames) + tuple(m.vq_grid):
        raise RuntimeError(f"the rollout returned codes of shape {out.shape}")
    generated = batch * (frames - context)
    return {"frames": frames, "context": context, "batch": batch, "window": window,
            "sampler": f"{sampler.schedule}, slide {sampler.slide}, show {sampler.show}, feedback {sampler.feedback}",
            "compile_s": compile_s, "seconds": seconds, "generated_frames": generated,
            "frames_per_s": generated / seconds}


def _num(x: float | None, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if x is None else format(x / scale, fmt)


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} G"


HEADER = (f"{'batch':>5} {'compile s':>9} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/step':>10} "
          f"{'TFLOP/s':>8} {'MFU':>6} {'XLA temp':>9} {'peak mem':>9}")


def format_row(row: dict) -> str:
    if row["oom"]:
        return f"{row['batch']:>5} OOM: {row['error']}"
    mfu = "n/a" if row["mfu"] is None else f"{row['mfu']:.1%}"
    return (f"{row['batch']:>5} {row['compile_s']:9.1f} {row['ms_per_step']:9.1f} {row['tokens_per_s']:10.3g} "
            f"{_num(row['flops_per_step'], '.4f', 1e12):>10} {_num(row['flops_per_s'], '.2f', 1e12):>8} {mfu:>6} "
            f"{row['xla_temp_bytes'] / 2**30:7.2f} G {_gib(row['peak_memory_bytes']):>9}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help='config file[:preset] (default configs/teco_dmlab.py: the paper\'s DMLab TECO)')
    p.add_argument("--dtype", default=None, choices=("bfloat16", "float32"), help="compute dtype (default bfloat16)")
    p.add_argument("--batch_sizes", default=None,
                   help="comma-separated train batch sizes, tried in increasing order up to the first OOM "
                        "(default 1,8,32)")
    p.add_argument("--steps", type=int, default=None, help="timed train steps per batch size (default 5)")
    p.add_argument("--rollout_frames", type=int, default=None,
                   help="frames of the rollout, context included (default 1000; 0 skips the rollout)")
    p.add_argument("--rollout_context", type=int, default=None,
                   help="context frames of the rollout (default a quarter of the config's window)")
    p.add_argument("--rollout_batch", type=int, default=1, help="videos rolled out at once")
    p.add_argument("--peak_flops", type=float, default=None,
                   help="the chip's dense bf16 FLOP/s, for a chip not in the script's table (or to override it)")
    p.add_argument("--cpu_small", action="store_true",
                   help="tiny shapes for a CPU smoke test: " + ", ".join(f"--{k} {v}" for k, v in CPU_SMALL.items())
                        + ", and " + ", ".join(f"{k}={v}" for k, v in CPU_SMALL_OVERRIDES.items())
                        + ", XLA's convolutions and quick compiles (flags given explicitly still win)")
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    defaults = CPU_SMALL if args.cpu_small else {"config": "configs/teco_dmlab.py", "dtype": "bfloat16",
                                                  "batch_sizes": "1,8,32", "steps": 5, "rollout_frames": 1000}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch_sizes {args.batch_sizes!r}: comma-separated integers")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or args.steps < 1:
        p.error("--batch_sizes needs positive sizes and --steps at least 1")
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole check, printed as it goes; returns the results (what --out writes)."""
    start = time.perf_counter()
    overrides = CPU_SMALL_OVERRIDES if args.cpu_small else {}
    with conv.use("xla" if args.cpu_small else conv.impl()):
        results = _check(args, overrides)
    results["total_s"] = time.perf_counter() - start
    print(f"\ntotal {results['total_s']:.0f} s", flush=True)
    return results


def _check(args: argparse.Namespace, overrides: dict) -> dict:
    """run's body: the header, the train-step table and the rollout, with one Trainer."""
    device = jax.devices()[0]
    if args.peak_flops:
        peak, peak_note = args.peak_flops, "from --peak_flops"
    else:
        peak, peak_note = peak_bf16(device.device_kind)
    with tempfile.TemporaryDirectory() as tmp:
        tr = step_trainer(args.config, args.dtype, overrides, tmp)
        cfg = tr.config
        params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tr.abstract_state.params))
        print(f"device: {device.device_kind} ({device.platform}, {jax.device_count()} device(s), the first used; "
              f"jax {jax.__version__})")
        print(f"config: {args.config}{' (paper size)' if ':' not in args.config else ''}"
              f"{' with ' + ', '.join(f'{k}={v}' for k, v in overrides.items()) if overrides else ''}"
              f"; convolutions: teco_jax.nn.conv path {conv.impl()!r}")
        print(f"        dtype {args.dtype}, seq_len {cfg.data.seq_len}, code grid {tuple(cfg.model.vq_grid)}, "
              f"DropLoss {cfg.model.drop_loss_rate}, {params:,} parameters; random weights and codes")
        print(f"FLOPs per step: {FLOPS_SOURCE}")
        print("MFU: " + (f"against {peak / 1e12:.0f} TFLOP/s dense bf16 ({peak_note})" if peak
                         else f"n/a: {peak_note}"))
        print(f"\ntrain step ({args.steps} timed steps after a warm-up, median; peak mem: "
              f"memory_stats()['peak_bytes_in_use'])\n{HEADER}", flush=True)
        rows = train_steps(tr, args.batch_sizes, args.steps, peak)
        results = {"device_kind": device.device_kind, "platform": device.platform, "jax": jax.__version__,
                   "config": args.config, "overrides": overrides, "dtype": args.dtype, "seq_len": cfg.data.seq_len,
                   "parameters": params, "conv": conv.impl(), "flops_source": FLOPS_SOURCE, "peak_flops": peak,
                   "mfu_note": peak_note, "train_step": rows, "rollout": None}
        if args.rollout_frames:
            context = args.rollout_context or max(1, cfg.data.seq_len // 4)
            r = rollout_speed(tr, args.rollout_frames, context, args.rollout_batch)
            print(f"\nrollout: {r['frames']} frames ({r['context']} context, {r['generated_frames']} generated), "
                  f"batch {r['batch']}, window {r['window']}, sampler {r['sampler']}; codes only "
                  f"(no VQ-GAN decoding)\n  compile {r['compile_s']:.1f} s, run {r['seconds']:.2f} s: "
                  f"{r['frames_per_s']:.2f} frames/s", flush=True)
            results["rollout"] = r
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_small:  # XLA reads XLA_FLAGS when the first backend starts (no effect once started)
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in FAST_COMPILE if f not in flags])
    results = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
