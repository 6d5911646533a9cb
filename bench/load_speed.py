"""Loading a trained model for inference: the whole train state through the Trainer (before)
vs parameters only (teco_jax/loading.py, after): seconds and peak resident memory.

    python bench/load_speed.py [--preset ""] [--workdir /tmp/teco_load_bench]

Writes a randomly initialised checkpoint of configs/teco_dmlab.py:<preset> (default: the
paper size) once, then loads it in two fresh processes, one per method, each reporting its
wall time (imports excluded) and peak RSS (imports included, as a user pays them).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config(preset: str):
    from teco_jax import config_base, trainer

    cfg = config_base.from_file(f"configs/teco_dmlab.py:{preset}")
    return trainer.config_replace(cfg, **{"model.vqgan_dir": "random", "mesh.shape": (1, 1, 1)})


def write(workdir: Path, preset: str) -> None:
    from teco_jax import checkpoint, trainer

    cfg = _config(preset)
    t = trainer.Trainer(cfg, workdir)
    checkpoint.save_config(workdir, cfg)
    ckpt = checkpoint.Checkpointer(workdir)
    ckpt.save(0, t.create_state(), force=True)
    ckpt.wait()
    ckpt.close()


def load(workdir: Path, method: str) -> dict:
    import jax

    if method == "trainer":  # what restore_model did before: the Trainer's whole abstract state
        from teco_jax import checkpoint, trainer

        t0 = time.perf_counter()
        cfg = checkpoint.load_config(workdir)
        tr = trainer.Trainer(cfg, workdir)
        ckpt = checkpoint.Checkpointer(workdir)
        with jax.set_mesh(tr.mesh):
            state = ckpt.restore(tr.abstract_state)
        ckpt.close()
        model = tr.model(state)
    else:
        from teco_jax import loading

        t0 = time.perf_counter()
        model, _ = loading.load_model(workdir)
    jax.block_until_ready(jax.tree.leaves(model))
    return {"seconds": time.perf_counter() - t0,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="", help='"" (paper size), tiny or cpu')
    p.add_argument("--workdir", default="/tmp/teco_load_bench")
    p.add_argument("--role", choices=("main", "write", "trainer", "params"), default="main")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    workdir = Path(args.workdir)
    if args.role == "write":
        write(workdir, args.preset)
        return 0
    if args.role in ("trainer", "params"):
        print(json.dumps(load(workdir, args.role)))
        return 0
    me = [sys.executable, __file__, "--preset", args.preset, "--workdir", str(workdir)]
    if not (workdir / "checkpoints" / "0").exists():
        t0 = time.perf_counter()
        subprocess.run(me + ["--role", "write"], check=True, cwd=ROOT)
        print(f"wrote a random checkpoint of teco_dmlab.py:{args.preset or '(paper size)'} in "
              f"{time.perf_counter() - t0:.0f} s to {workdir}")
    size = sum(f.stat().st_size for f in (workdir / "checkpoints").rglob("*") if f.is_file())
    print(f"checkpoint on disk: {size / 2**30:.2f} GiB (parameters, Adam moments, step, key)")
    for role, name in (("trainer", "whole train state via the Trainer (before)"),
                       ("params", "parameters only, teco_jax.loading (after)")):
        out = subprocess.run(me + ["--role", role], check=True, cwd=ROOT, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:45s} {r['seconds']:6.1f} s   peak RSS {r['peak_rss_gib']:5.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
