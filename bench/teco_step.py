"""TECO train-step cost at seq_len 300: the DropLoss speed-up and achieved FLOP/s.

    python bench/teco_step.py [--preset tiny] [--batch 4] [--steps 5]

For drop_loss_rate 0.9 and 0.0, prints the jitted train step's time, the FLOPs XLA's
cost analysis counts for it, and FLOPs / time, next to this machine's dense float32
matmul FLOP/s measured in the same run.
"""

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax import config_base, parallel
from teco_jax.trainer import Trainer


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_cost(preset: str, rate: float, batch: int, seq_len: int, steps: int) -> tuple[float, float]:
    cfg = config_base.from_file(f"configs/teco_dmlab.py:{preset}")
    cfg.unlock()
    cfg.model.vqgan_dir = "random"
    cfg.model.drop_loss_rate = rate
    cfg.data.seq_len, cfg.data.batch_size = seq_len, batch
    cfg.lock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
        state = trainer.create_state()
        rng = np.random.default_rng(0)
        m = cfg.model
        local = {"codes": rng.integers(0, m.vq_vocab, (batch, seq_len) + tuple(m.vq_grid)).astype(np.int32),
                 "actions": rng.integers(0, m.num_actions, (batch, seq_len)).astype(np.int32)}
        data = parallel.global_batch(local, trainer.mesh)
        constants = trainer.device_constants()
        step = trainer.step_fn(data, constants)
        with jax.set_mesh(trainer.mesh):
            flops = step.lower(state, data, constants).compile().cost_analysis()["flops"]
            state, metrics = step(state, data, constants)  # compile + first step
            jax.block_until_ready(metrics)
            t = time.perf_counter()
            for _ in range(steps):
                state, metrics = step(state, data, constants)
            jax.block_until_ready(metrics)
    return (time.perf_counter() - t) / steps, flops


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq_len", type=int, default=300)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    peak = matmul_flops()
    print(f"dense f32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s on {jax.devices()[0].platform}")
    times = {}
    for rate in (0.9, 0.0):
        dt, flops = step_cost(args.preset, rate, args.batch, args.seq_len, args.steps)
        times[rate] = dt
        print(f"teco_dmlab:{args.preset} seq_len {args.seq_len} batch {args.batch} drop_loss_rate {rate}: "
              f"{dt * 1e3:8.1f} ms/step, {flops / 1e9:8.2f} GFLOP/step, {flops / dt / 1e9:6.1f} GFLOP/s "
              f"({flops / dt / peak:.0%} of matmul)", flush=True)
    print(f"DropLoss speed-up (rate 0.0 time / rate 0.9 time): {times[0.0] / times[0.9]:.2f}x")


if __name__ == "__main__":
    main()
