"""Two JAX processes on this machine train like one process: same losses, one shared checkpoint,
the same evaluation metrics, one picture; a SIGTERM to one process stops both at one saved step.

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


def _run(workdir: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "multihost_check.py"), "--workdir", str(workdir),
                           "--num_processes", "2", "--local_devices", "2", "--timeout", "400", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    path = workdir / "report.json"
    if not path.exists():
        pytest.fail(f"multihost_check failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    rep = json.loads(path.read_text())
    if rep["return_codes"] != [0, 0] or ("reference_losses" not in rep and "--sigterm" not in args):
        pytest.fail("a process failed:\n" + json.dumps({k: rep.get(k) for k in ("return_codes", "logs",
                                                                                   "reference_log")}, indent=1))
    return rep


@pytest.fixture(scope="module")
def report(tfds_dir, tmp_path_factory):
    """The toy task, 3 steps, a picture at step 3 and 2 test batches evaluated at the end."""
    return _run(tmp_path_factory.mktemp("multihost"), "--data", str(tfds_dir), "--steps", "3", "--eval_batches", "2",
                "--image_every", "3")


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


def test_evaluation_covers_the_global_batch(report):
    """Each process reads its share of the test batches; the metrics are those of all of them, as one
    process computes them on the same global batches."""
    assert report["multi_eval"] and report["multi_eval"] == pytest.approx(report["reference_eval"], rel=1e-6)


def test_the_picture_is_drawn_from_the_global_batch(report):
    assert report["images"] == ["samples_0000003.png"]
    assert report["ends"] == [{"step": 3, "stop_reason": "done"}] * 2


def test_sigterm_to_one_process_stops_both_at_one_saved_step(tfds_dir, tmp_path):
    rep = _run(tmp_path, "--data", str(tfds_dir), "--sigterm")
    steps = {e["step"] for e in rep["ends"]}
    assert len(steps) == 1 and rep["latest_checkpoint"] == steps.pop() >= 3
    assert [e["stop_reason"] for e in rep["ends"]] == ["signal", "signal"]  # process 0 got no signal itself


@pytest.mark.slow
@pytest.mark.parametrize("task", ["vqgan", "teco"])
def test_vqgan_and_teco_with_pictures_and_evaluation(task, tmp_path):
    """The tiny VQ-GAN and TECO of teco_jax/testing.py (those of tests/test_sharding.py), 2 steps, a picture
    and an evaluation."""
    rep = _run(tmp_path, "--task", task, "--steps", "2", "--eval_batches", "1", "--image_every", "2")
    assert rep["multi_losses"] == pytest.approx(rep["reference_losses"], rel=1e-6)
    assert rep["multi_eval"] and rep["multi_eval"] == pytest.approx(rep["reference_eval"], rel=1e-5)
    # Where a gradient is pure rounding noise, Adam's step is +-lr whichever way the noise falls, so
    # a few elements of the checkpoint may differ by up to 2 lr (lr = 1e-3): allow 0.1% of them.
    assert rep["checkpoint_fraction_off"] <= 1e-3 and rep["checkpoint_max_abs_diff"] <= 3e-3
    assert rep["images"] == (["samples_0000002.png"] if task == "vqgan" else [])  # TECO draws no picture
