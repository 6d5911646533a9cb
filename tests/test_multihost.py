"""Two JAX processes on this machine train like one process: same losses, one shared checkpoint.

scripts/multihost_check.py starts two processes (2 CPU devices each) joined by
jax.distributed.initialize(coordinator_address="localhost:PORT", ...) on a free port, each
running Trainer.train() on the toy task for 3 steps over a (data, fsdp, model) = (1, 2, 2)
mesh: fsdp spans the two processes (parameters and Adam state are split between them),
model spans each process's two devices. Each process reads only its shard of the episodes
(even / odd episode indices) and contributes its half of the global batch.

Why the reference is not a plain one-process Trainer.train(): with one process the pipeline
shuffles all episodes as one shard, so its global batches hold other episodes than the two
processes' halves and the losses differ for that reason alone. The reference is therefore
one process with the same 4 devices and mesh, running the same jitted step on global
batches concatenated from the two per-process pipelines (process_index 0 and 1 of 2), i.e.
exactly the global batches the two processes assemble. Then the losses must be equal
(bitwise on CPU; we allow 1e-6 relative), and the checkpoint both processes wrote must
restore, in the reference process, to the reference's parameters and optimizer state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tfds_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("multihost")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "multihost_check.py"), "--data", str(tfds_dir),
                           "--workdir", str(workdir), "--num_processes", "2", "--local_devices", "2", "--steps", "3",
                           "--timeout", "240"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    path = workdir / "report.json"
    if not path.exists():
        pytest.fail(f"multihost_check failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    rep = json.loads(path.read_text())
    if rep["return_codes"] != [0, 0] or "reference_losses" not in rep:
        pytest.fail("a process failed:\n" + json.dumps({k: rep.get(k) for k in ("return_codes", "logs",
                                                                                   "reference_log")}, indent=1))
    return rep


def test_two_processes_match_one_process(report):
    multi, ref = report["multi_losses"], report["reference_losses"]
    assert len(multi) == len(ref) == 3 and len(set(ref)) == 3
    assert multi == pytest.approx(ref, rel=1e-6, abs=0)


def test_each_process_reads_only_its_shard(report):
    per_process = report["multi_episodes"]  # [process][step][example] episode indices
    assert per_process == report["reference_episodes"]
    for i, steps in enumerate(per_process):
        assert all(e % 2 == i for batch in steps for e in batch)  # process i reads episodes i::2
        assert all(len(batch) == 2 for batch in steps)  # half of the global batch of 4


def test_both_processes_write_one_checkpoint(report):
    assert report["restored_step"] == 3
    assert report["checkpoint_max_abs_diff"] <= 1e-6
    data_files = {Path(p).name for p in report["data_state_files"]}
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= data_files  # each process's iterator state
