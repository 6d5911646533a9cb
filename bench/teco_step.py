"""TECO train-step cost: compile time, step time, peak memory, FLOPs and FLOP/s.

    python bench/teco_step.py [--preset ""] [--batch 1] [--seq_len 300] [--rates 0.9,0.0] [--remat]
                              [--loss_chunk N] [--steps 3] [--conv auto[,xla,taps,winograd]]

For each DropLoss rate, a fresh process builds the preset's TECO (random weights, random
int32 codes, vqgan_dir=random), compiles the Trainer's jitted train step once
(`lower().compile()`, timed), runs it `--steps` times and prints: compile seconds, the
median step time, peak resident memory (the process's ru_maxrss: parameters, Adam state,
activations, XLA's buffers), XLA's temporary buffer size for the step (its activations:
deterministic, unlike RSS), the model's FLOPs per step and FLOP/s, next to this machine's dense
float32 matmul FLOP/s measured in the same process. The model's FLOPs are XLA's count for the
same step with direct convolutions (`conv.set_impl("xla")`) and without --loss_chunk: the work
done, not what a path spends on it (Winograd spends fewer, recomputation more), so FLOP/s is
an effective rate. `--conv` takes several convolution paths (teco_jax/nn/conv.py): each is
compiled, then their steps alternate, so a shared machine's drift falls on all alike.
`--steps 0` compiles only (compile time, XLA temp, FLOPs). The defaults are the paper preset
at batch 1 and 300 frames, the setting the official code was measured in.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_config(spec: str, *, batch: int, seq_len: int | None = None, dtype: str | None = None, **model):
    """The config file `spec` (path[:preset]) set up to time train steps: a random VQ-GAN,
    one device, `batch` clips of `seq_len` frames (default: the config's), `dtype` (default:
    the config's) and model.<key> = value for each keyword."""
    from teco_jax import config_base, trainer

    changes = {"model.vqgan_dir": "random", "data.batch_size": batch, "mesh.shape": (1, 1, 1)}
    changes.update({f"model.{key}": value for key, value in model.items()})
    if seq_len is not None:
        changes["data.seq_len"] = seq_len
    if dtype is not None:
        changes["dtype"] = dtype
    return trainer.config_replace(config_base.from_file(spec), **changes)


def random_batch(tr, batch: int | None = None, seed: int = 0) -> tuple[dict, object]:
    """`batch` clips (default: the config's batch size) of random int32 codes and actions
    shaped by the Trainer's config, as global arrays on its mesh, and the step's device
    constants. The step does not read the config's batch size, so one Trainer serves any."""
    import numpy as np

    from teco_jax import parallel

    rng = np.random.default_rng(seed)
    m, d = tr.config.model, tr.config.data
    batch = batch or d.batch_size
    local = {"codes": rng.integers(0, m.vq_vocab, (batch, d.seq_len) + tuple(m.vq_grid)).astype(np.int32),
             "actions": rng.integers(0, m.num_actions, (batch, d.seq_len)).astype(np.int32)}
    return parallel.global_batch(local, tr.mesh), tr.device_constants()


def compile_step(tr, data: dict, constants) -> tuple[object, object, float]:
    """A fresh train state and the Trainer's step compiled for it (`lower().compile()`), with
    the seconds the compile took. Call it inside `jax.set_mesh(tr.mesh)`."""
    state = tr.create_state()
    t0 = time.perf_counter()
    compiled = tr.step_fn(data, constants).lower(state, data, constants).compile()
    return compiled, state, time.perf_counter() - t0


def run_step(compiled, state, data: dict, constants) -> tuple[object, float]:
    """One step (the old state is donated): the new state and the step's seconds."""
    import jax

    t = time.perf_counter()
    state, metrics = compiled(state, data, constants)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - t


def measure(preset: str, rate: float, batch: int, seq_len: int, steps: int, remat: bool, loss_chunk: int,
            convs: list[str]) -> list[dict]:
    """One row per convolution path; with several, each is compiled, then their steps alternate
    (a, b, a, b, ...) so that a shared machine's drift falls on all alike."""
    import jax
    import numpy as np

    from teco_jax import trainer
    from teco_jax.nn import conv

    cfg = step_config(f"configs/teco_dmlab.py:{preset}", batch=batch, seq_len=seq_len, drop_loss_rate=rate,
                      remat=remat, loss_chunk=loss_chunk)
    peak = matmul_flops() if steps else float("nan")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer.Trainer(cfg, tmp)
        plain = trainer.Trainer(trainer.config_replace(cfg, **{"model.loss_chunk": 0}), tmp) if loss_chunk else None
        data, constants = random_batch(tr)
        states = []
        with jax.set_mesh(tr.mesh):
            conv.set_impl("xla")  # the model's work: direct convolutions, no loss-chunk loop (XLA counts a body once)
            model_flops = (plain or tr).step_fn(data, constants).lower(tr.create_state(), data,
                                                                     constants).cost_analysis()["flops"]
            for impl in convs:
                conv.set_impl(impl)  # traced anew with this path
                compiled, state, compile_s = compile_step(tr, data, constants)
                states.append(state)
                rows.append({"rate": rate, "conv": impl, "compiled": compiled, "compile_s": compile_s,
                             "flops": model_flops, "xla_temp_gib": compiled.memory_analysis().temp_size_in_bytes / 2**30,
                             "steps_s": []})
            for _ in range(steps):
                for i, row in enumerate(rows):
                    states[i], seconds = run_step(row["compiled"], states[i], data, constants)
                    row["steps_s"].append(seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for row in rows:
        del row["compiled"]
        row["step_s"] = float(np.median(row["steps_s"])) if row["steps_s"] else float("nan")
        row.update(flops_per_s=row["flops"] / row["step_s"], matmul_peak=peak, peak_rss_gib=rss)
    return rows


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from teco_jax.nn.conv import IMPLS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="", help='"" (paper size), tiny or cpu')
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq_len", type=int, default=300)
    p.add_argument("--steps", type=int, default=3, help="timed steps per rate (0: compile only)")
    p.add_argument("--rates", default="0.9,0.0", help="DropLoss rates, one process each")
    p.add_argument("--remat", action="store_true", help="model.remat=True (recompute transformer blocks)")
    p.add_argument("--loss_chunk", type=int, default=0,
                   help="model.loss_chunk (decoder and prior losses in groups of this many frames)")
    p.add_argument("--conv", default="auto",
                   help="convolution paths to measure, comma-separated: " + ", ".join(IMPLS) + " (nn/conv.py)")
    p.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)  # a child: this rate only
    args = p.parse_args()
    if not set(args.conv.split(",")) <= set(IMPLS):
        p.error(f"--conv {args.conv!r}: each path must be one of " + ", ".join(IMPLS))
    if args.one is not None:
        print(json.dumps(measure(args.preset, args.one, args.batch, args.seq_len, args.steps, args.remat,
                                 args.loss_chunk, args.conv.split(","))))
        return 0
    name = f"teco_dmlab.py:{args.preset}" if args.preset else "teco_dmlab.py (paper size)"
    print(f"{name}, batch {args.batch}, seq_len {args.seq_len}, remat {args.remat}, loss_chunk "
          f"{args.loss_chunk}, {args.steps} steps, "
          f"one process per rate", flush=True)
    print(f"{'drop rate':>9} {'conv':>9} {'compile s':>9} {'step s (median)':>15} {'peak RSS':>9} {'XLA temp':>9} {'GFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'% of matmul':>11}")
    for rate in (float(r) for r in args.rates.split(",")):
        cmd = [sys.executable, __file__, "--preset", args.preset, "--batch", str(args.batch), "--seq_len",
               str(args.seq_len), "--steps", str(args.steps), "--one", str(rate), "--loss_chunk", str(args.loss_chunk),
               "--conv", args.conv]
        cmd += ["--remat"] if args.remat else []
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            print(f"{rate:9.1f} failed (rc {out.returncode}): {out.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        for r in json.loads(out.stdout.strip().splitlines()[-1]):
            print(f"{rate:9.1f} {r['conv']:>9} {r['compile_s']:9.1f} {r['step_s']:15.2f} {r['peak_rss_gib']:7.2f} G "
                  f"{r['xla_temp_gib']:7.2f} G "
                  f"{r['flops'] / 1e9:10.0f} {r['flops_per_s'] / 1e9:8.1f} {r['flops_per_s'] / r['matmul_peak']:10.0%}  "
                  f"(steps {', '.join(f'{s:.2f}' for s in r['steps_s'])}; matmul {r['matmul_peak'] / 1e9:.0f} GFLOP/s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
