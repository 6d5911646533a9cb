"""Train any teco_jax model from a config file.

    python -m teco_jax.train --config configs/vqgan_dmlab.py:tiny --workdir runs/vqgan \
        --config.data.dir=data/dmlab_tfds [--config.train.num_steps=2000 ...]

A workdir that already holds a checkpoint is resumed; a resume may change only the keys
listed in teco_jax/workdir.py (train.*, data.dir, the mesh, the learning-rate schedule),
and every start is recorded in WORKDIR/config_history.jsonl. `--dry_run` builds the
model's shapes only and prints parameter counts and per-device memory, without data.

Exit status:
    0    trained to train.num_steps, or stopped at train.max_minutes (checkpoint saved)
    1    bad input (one line: `error: ...`, naming the key, file or directory) or a crash
    130  Ctrl-C (checkpoint saved; rerun the same command to resume)
    143  SIGTERM, e.g. a scheduler's preemption (checkpoint saved; rerun to resume)
Several hosts: pass --coordinator_address/--num_processes/--process_id, or set them in
the environment that `jax.distributed.initialize()` reads (SLURM, TPU pods).
"""

from __future__ import annotations

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from teco_jax.errors import UserError

EXIT_INTERRUPTED, EXIT_PREEMPTED = 130, 128 + 15

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, optionally with :preset", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and images")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "build shapes only; print parameter counts and memory")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (env-configured)")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "index of this process (multi-host)")


def dry_run(trainer) -> None:
    from teco_jax.trainer import _fmt_bytes  # deferred: as in main()

    counts = trainer.task.describe(trainer.abstract_model)
    width = max(len(k) for k in counts)
    print(f"{trainer.config.task} parameters:")
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>14,d}  ({n / 1e6:.1f} M)")
    mem = trainer.memory_report()
    n_dev = trainer.mesh.devices.size
    print(f"mesh {dict(trainer.mesh.shape)} over {n_dev} devices; per device: "
          f"params {_fmt_bytes(mem['params'])}, optimizer state {_fmt_bytes(mem['opt_state'])}")


def main(argv) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every save at INFO
    if _COORDINATOR.value or _DISTRIBUTED.value:
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    from teco_jax.trainer import Trainer  # deferred: after jax.distributed.initialize(), before any JAX work

    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/vqgan_dmlab.py:tiny")
    if _DRY_RUN.value:
        dry_run(Trainer(config, _WORKDIR.value or "/tmp/teco_jax_dry_run"))
        return 0
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    try:
        trainer = Trainer(config, _WORKDIR.value)
        trainer.train()
    except KeyboardInterrupt:  # Ctrl-C: the trainer has saved a checkpoint; no traceback for the user
        return EXIT_INTERRUPTED
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return EXIT_PREEMPTED if trainer.stop_reason == "signal" else 0


if __name__ == "__main__":
    from teco_jax.config_base import parse_flags

    sys.exit(app.run(main, flags_parser=parse_flags))
