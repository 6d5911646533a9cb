"""Check multi-process training on one machine: N CPU processes vs one process, same global batch.

    python scripts/multihost_check.py --data DIR --workdir OUT [--num_processes 2] [--local_devices 2]

It launches N copies of itself (`--process_id i`), each with `--local_devices` CPU devices,
joined by `jax.distributed.initialize(coordinator_address="localhost:PORT", ...)` (cross-
process CPU collectives: gloo, jax's default). Each runs `Trainer.train()` on the toy task
(teco_jax/testing.py) over the TFDS dataset in DIR, on a (1, fsdp, model) mesh whose fsdp axis
spans the processes, so parameters and optimizer state are sharded across them. Each process
reads only its own shard of the episodes (`process_index::process_count`) and the global
batch is assembled from the parts with `make_array_from_process_local_data`; both processes
write the checkpoint (orbax) and their own data-iterator state.

The reference is ONE process with N x local_devices devices and the same mesh, driving the
same jitted step on global batches built the way the N processes build theirs: the per-
process pipelines (process_index=i, process_count=N) concatenated in process order. A plain
one-process `Trainer.train()` would read the episodes in a different order (one shuffled
shard instead of N), so its batches, and losses, differ: that comparison would not be apples
to apples. The report (JSON on stdout and in OUT/report.json) has both runs' losses, the
episode indices each process read, and whether the N-process checkpoint, restored in the
reference process, equals the reference's parameters after the same steps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _env(num_devices: int) -> dict[str, str]:
    flags = f"--xla_force_host_platform_device_count={num_devices} {FAST_COMPILE}"
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def _config(args):
    """The run's config: the toy task, or the tiny VQ-GAN / TECO of teco_jax/testing.py, on a (1, N, local) mesh."""
    from teco_jax import testing, trainer

    mesh = (1, args.num_processes, args.local_devices)
    steps = 10**6 if args.sigterm else args.steps
    common = {"mesh.shape": mesh, "data.batch_size": 2 * args.num_processes, "train.num_steps": steps,
              "train.ckpt_every": steps, "train.log_every": 1, "train.eval_every": 0,
              "train.eval_batches": args.eval_batches, "train.eval_batch_size": 2 * args.num_processes,
              "train.image_every": args.image_every}
    if args.task == "toy":
        return trainer.config_replace(testing.toy_config(args.data), **common)
    make = testing.teco_mesh_config if args.task == "teco" else testing.vqgan_mesh_config
    return trainer.config_replace(make(args.data, mesh), **common)


def process_main(args) -> None:
    """One of the N processes: Trainer.train(), recording the episodes this process read."""
    import jax

    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id, initialization_timeout=120)
    from teco_jax import trainer

    assert jax.process_count() == args.num_processes and jax.local_device_count() == args.local_devices
    seen: list[list[int]] = []

    class RecordingTrainer(trainer.Trainer):
        def dataset(self, split, **kw):
            ds = super().dataset(split, **kw)
            if split != "train":
                return ds
            return ds.map(lambda b: (seen.append(b["episode_index"].tolist()), b)[1])

    cfg = _config(args)
    workdir = Path(args.workdir) / "multi"
    tr = RecordingTrainer(cfg, workdir)
    state = tr.train()
    (workdir / f"episodes_{jax.process_index()}.json").write_text(json.dumps(seen))
    (workdir / f"end_{jax.process_index()}.json").write_text(json.dumps(
        {"step": int(state.step), "stop_reason": tr.stop_reason}))
    jax.distributed.shutdown()


def reference_main(args) -> None:
    """One process, the same devices in total: the same steps on the same global batches."""
    import jax
    import numpy as np

    from teco_jax import checkpoint, parallel, trainer
    from teco_jax.data import pipeline

    cfg = _config(args)
    tr = trainer.Trainer(cfg, Path(args.workdir) / "reference")
    n = args.num_processes
    shards = [iter(pipeline.make_dataset(cfg.data.dir, "train", seq_len=cfg.data.seq_len,
                                         batch_size=cfg.data.batch_size // n, seed=cfg.seed, process_index=i,
                                         process_count=n, read_threads=0, prefetch=1)[0]) for i in range(n)]
    state, constants = tr.create_state(), tr.device_constants()
    losses, episodes = [], [[] for _ in range(n)]
    for _ in range(args.steps):
        parts = [next(it) for it in shards]
        for i, p in enumerate(parts):
            episodes[i].append(p["episode_index"].tolist())
        local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch = parallel.global_batch(tr.task.prepare_batch(local), tr.mesh)
        with jax.set_mesh(tr.mesh):
            state, metrics = tr.step_fn(batch, constants)(state, batch, constants)
        losses.append(float(metrics["loss"]))
    ck = checkpoint.Checkpointer(Path(args.workdir) / "multi")
    with jax.set_mesh(tr.mesh):
        restored = ck.restore(tr.abstract_state)
    ck.close()
    pairs = [(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(state.params) + jax.tree.leaves(state.opt_state),
                             jax.tree.leaves(restored.params) + jax.tree.leaves(restored.opt_state))]
    diffs = [float(np.max(np.abs(a - b))) for a, b in pairs]
    # Adam turns a gradient that is pure rounding noise (one process sums in another order) into a
    # full +-lr step, so a few elements may differ by ~2 lr; count how many differ at all.
    off = sum(int(np.sum(np.abs(a - b) > 1e-6 + 1e-5 * np.abs(a))) for a, b in pairs)
    out = {"losses": losses, "episodes": episodes, "restored_step": int(restored.step),
           "checkpoint_max_abs_diff": max(diffs),
           "checkpoint_fraction_off": off / sum(a.size for a, _ in pairs)}
    if args.eval_batches:  # the test batches Trainer.evaluate assembles: each process's part, in order
        bs = cfg.train.eval_batch_size // n
        tests = [iter(pipeline.make_dataset(cfg.data.dir, "test", seq_len=cfg.data.seq_len, batch_size=bs, seed=0,
                                            shuffle=True, random_offset=True, num_epochs=None, process_index=i, process_count=n, read_threads=cfg.data.read_threads,
                                            prefetch=cfg.data.prefetch, drop_remainder=True)[0]) for i in range(n)]
        batches = []
        for _ in range(cfg.train.eval_batches):
            parts = [next(it) for it in tests]
            batches.append(parallel.global_batch({k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
                                                 tr.mesh))
        out["eval"] = tr.task.evaluate(tr.model(state), iter(batches), constants)
    (Path(args.workdir) / "reference.json").write_text(json.dumps(out))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args) -> dict:
    """Start the N processes, wait (with a timeout), run the reference, compare."""
    workdir = Path(args.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.task != "toy" and not args.data:  # the sharding tests' tiny datasets (frames or codes)
        sys.path.insert(0, str(ROOT))
        from teco_jax.testing import write_tiny_dataset

        args.data = str(write_tiny_dataset(workdir, args.task))
    port = _free_port()
    common = [sys.executable, __file__, "--data", str(args.data), "--workdir", str(workdir), "--steps", str(args.steps),
              "--eval_batches", str(args.eval_batches), "--task", args.task, "--image_every", str(args.image_every),
              "--num_processes", str(args.num_processes), "--local_devices", str(args.local_devices)]
    if args.sigterm:
        common.append("--sigterm")
    t0 = time.perf_counter()
    procs, logs = [], []
    for i in range(args.num_processes):
        log = open(workdir / f"process_{i}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(common + ["--role", "process", "--process_id", str(i), "--coordinator",
                                                f"localhost:{port}"], env=_env(args.local_devices), cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + args.timeout
    if args.sigterm:  # preempt ONE process once training runs; both must stop at the same saved step
        metrics = workdir / "multi" / "metrics.jsonl"
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        procs[-1].send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append("timeout")
    for p in procs:  # never leave a process waiting on a dead peer
        if p.poll() is None:
            p.kill()
            p.wait()
    for log in logs:
        log.close()
    report: dict = {"return_codes": codes, "multi_seconds": round(time.perf_counter() - t0, 1)}
    if any(c != 0 for c in codes):
        report["logs"] = {i: (workdir / f"process_{i}.log").read_text()[-4000:] for i in range(args.num_processes)}
        return report
    report["ends"] = [json.loads((workdir / "multi" / f"end_{i}.json").read_text())
                      for i in range(args.num_processes)]
    report["images"] = sorted(p.name for p in (workdir / "multi" / "images").glob("*.png")) \
        if (workdir / "multi" / "images").exists() else []
    if args.sigterm:  # no reference run: the point is where the processes stopped
        from teco_jax import checkpoint

        ck = checkpoint.Checkpointer(workdir / "multi")
        report["latest_checkpoint"] = ck.latest_step()
        ck.close()
        return report
    t1 = time.perf_counter()
    ref = subprocess.run(common + ["--role", "reference"], env=_env(args.num_processes * args.local_devices),
                         cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    report["reference_seconds"] = round(time.perf_counter() - t1, 1)
    if ref.returncode:
        report["reference_log"] = (ref.stdout + ref.stderr)[-4000:]
        return report
    reference = json.loads((workdir / "reference.json").read_text())
    rows = [json.loads(line) for line in (workdir / "multi" / "metrics.jsonl").read_text().splitlines()]
    report.update(
        multi_losses=[r["train/loss"] for r in rows if "train/loss" in r],
        reference_losses=reference["losses"],
        multi_episodes=[json.loads((workdir / "multi" / f"episodes_{i}.json").read_text())
                        for i in range(args.num_processes)],
        reference_episodes=reference["episodes"],
        restored_step=reference["restored_step"],
        multi_eval={k[len("eval/"):]: v for r in rows for k, v in r.items() if k.startswith("eval/")},
        reference_eval=reference.get("eval", {}),
        checkpoint_max_abs_diff=reference["checkpoint_max_abs_diff"],
        checkpoint_fraction_off=reference["checkpoint_fraction_off"],
        data_state_files=sorted(str(p.relative_to(workdir)) for p in (workdir / "multi" / "checkpoints").rglob("*")
                                if p.is_file() and p.parent.name == "data"))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="", help="a TFDS dataset (toy: a video one; vqgan/teco: "
                                                  "default, a tiny one written under --workdir)")
    parser.add_argument("--task", choices=("toy", "vqgan", "teco"), default="toy")
    parser.add_argument("--image_every", type=int, default=0, help="write the task's picture every N steps")
    parser.add_argument("--sigterm", action="store_true",
                        help="train until SIGTERM, sent to the last process only; report where each stopped")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--local_devices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--eval_batches", type=int, default=0,
                        help="test batches evaluated after training (0: none; see docs/scaling.md)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each phase")
    parser.add_argument("--role", choices=("launch", "process", "reference"), default="launch")
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--coordinator", default="")
    args = parser.parse_args(argv)
    if args.role == "process":
        process_main(args)
    elif args.role == "reference":
        reference_main(args)
    else:
        report = launch(args)
        (Path(args.workdir) / "report.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report))
        if args.sigterm:
            ok = bool(report.get("ends")) and len({e["step"] for e in report["ends"]}) == 1
        else:
            ok = bool(report.get("multi_losses")) and report["multi_losses"] == report["reference_losses"]
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    if "--role" in sys.argv:  # a child: make the repository importable
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
