"""Exact resume through the real CLI: SIGKILL a run after a checkpoint, restart it, and end
with the same parameters as a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from teco_jax import checkpoint, trainer
from tests.helpers.toy_task import toy_config

REPO = Path(__file__).resolve().parents[1]
CKPT_EVERY = 50


def _cli(workdir: Path, data_dir: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "teco_jax.train", f"--config=tests/helpers/toy_task.py:{data_dir}",
            f"--workdir={workdir}", f"--config.train.num_steps={steps}", f"--config.train.ckpt_every={CKPT_EVERY}",
            "--config.train.log_every=100"]


def _final_params(workdir: Path, data_dir: Path):
    t = trainer.Trainer(toy_config(data_dir), workdir)
    ckpt = checkpoint.Checkpointer(workdir)
    try:
        state = ckpt.restore(t.abstract_state)
    finally:
        ckpt.close()
    return int(state.step), jax.tree.leaves(jax.device_get(state.params))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tfds_dir, tmp_path):
    steps = 700
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(_cli(tmp_path / "straight", tfds_dir, steps), cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=300)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(run, tfds_dir, steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = [int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit()]
        if done and max(done) >= 3 * CKPT_EVERY:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; raise `steps`"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = checkpoint.Checkpointer(run)
    resumed_from = killed_at.latest_step()
    killed_at.close()
    assert 3 * CKPT_EVERY <= resumed_from < steps

    out = subprocess.run(_cli(run, tfds_dir, steps), cwd=REPO, env=env, check=True, capture_output=True,
                         text=True, timeout=300)
    assert "resumed from" in out.stdout + out.stderr

    step_a, params_a = _final_params(tmp_path / "straight", tfds_dir)
    step_b, params_b = _final_params(run, tfds_dir)
    assert step_a == step_b == steps
    for a, b in zip(params_a, params_b):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sig, returncode, message", [(signal.SIGTERM, 143, "stopped at step"),
                                                      (signal.SIGINT, 130, "interrupted at step")])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tfds_dir, tmp_path, sig, returncode, message):
    """SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) both save the current step, say so, and
    exit without a traceback; rerunning the command resumes from there."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli(tmp_path, tfds_dir, 10**6), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((tmp_path / "checkpoints").glob("[0-9]*")):
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == returncode, out
    assert "checkpoint saved" in out and "Traceback" not in out, out
    ckpt = checkpoint.Checkpointer(tmp_path)
    step = ckpt.latest_step()
    ckpt.close()
    assert step is not None and CKPT_EVERY <= step < 10**6
    assert f"{message} {step}" in out, out


def test_unknown_config_key_on_the_command_line_is_a_one_line_error():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", "--config", "configs/teco_dmlab.py:tiny",
                          "--config.model.codebok_size=64", "--dry_run"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert "the config has no key 'codebok_size' (--config.model.codebok_size=64)" in out.stderr, out.stderr
    assert 'did you mean "codebook_size"' in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
