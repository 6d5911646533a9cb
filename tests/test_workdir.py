"""Workdirs that cannot be broken: config checks on resume, the lock, no debris, absolute paths,
exit codes and one-line errors of the training CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teco_jax import checkpoint, trainer
from teco_jax import workdir as wd
from teco_jax.errors import UserError
from tests.helpers.toy_task import toy_config

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _replace(cfg, **updates):
    return trainer.config_replace(cfg, **updates)


@pytest.fixture
def trained(tfds_dir, tmp_path):
    """A workdir with a step-2 checkpoint of the toy task."""
    run = tmp_path / "run"
    trainer.Trainer(toy_config(tfds_dir, num_steps=2, ckpt_every=2), run).train()
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- resume checks
def test_a_resume_that_changes_the_model_is_refused_before_anything_is_written(tfds_dir, trained):
    before = _snapshot(trained)
    wider = _replace(toy_config(tfds_dir, num_steps=4), **{"model.width": 16})
    with pytest.raises(wd.WorkdirError) as e:
        trainer.Trainer(wider, trained).train()
    msg = str(e.value)
    assert "\n" not in msg
    assert "model.width=8" in msg and "model.width=16" in msg and "new --workdir" in msg, msg
    assert _snapshot(trained) == before  # config.json, history, checkpoints, metrics: byte for byte
    # ... and the workdir still resumes with its own config
    state = trainer.Trainer(toy_config(tfds_dir, num_steps=3, ckpt_every=3), trained).train()
    assert int(state.step) == 3


def test_a_mistyped_data_dir_on_resume_writes_nothing(tfds_dir, trained):
    before = _snapshot(trained)
    cfg = _replace(toy_config(tfds_dir, num_steps=4), **{"data.dir": str(tfds_dir) + "_typo"})
    with pytest.raises(UserError, match=r"config.data.dir=.*_typo: no such directory"):
        trainer.Trainer(cfg, trained).train()
    assert _snapshot(trained) == before


def test_allowed_changes_are_kept_in_the_config_history(tfds_dir, trained):
    trainer.Trainer(toy_config(tfds_dir, num_steps=3, ckpt_every=3), trained).train()
    history = [json.loads(line) for line in (trained / wd.HISTORY_FILE).read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 2]
    assert history[0]["changes"] == {}
    assert history[1]["changes"]["train.num_steps"] == {"stored": 2, "new": 3}
    assert history[1]["changes"]["train.ckpt_every"] == {"stored": 2, "new": 3}
    assert json.loads((trained / "config.json").read_text())["train"]["num_steps"] == 3


def test_checkpoint_structure_is_checked_even_without_a_stored_config(tfds_dir, trained):
    (trained / "config.json").unlink()
    wider = _replace(toy_config(tfds_dir, num_steps=4), **{"model.width": 16})
    with pytest.raises(checkpoint.CheckpointMismatchError, match="does not match") as e:
        trainer.Trainer(wider, trained).train()
    assert "\n" not in str(e.value)
    assert not (trained / "config.json").exists()


def test_resumable_keys():
    assert wd.resumable("train.num_steps") and wd.resumable("data.dir") and wd.resumable("mesh.shape")
    assert not wd.resumable("model.width") and not wd.resumable("data.seq_len") and not wd.resumable("seed")
    assert wd.resumable("model.sampling.feedback") and not wd.resumable("model.z_dropout")
    assert not wd.resumable("optim.clip_norm")  # 0 -> > 0 adds a transform to the optimizer state


# ------------------------------------------------------------------------------------- paths
def test_paths_are_recorded_absolute(tfds_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tfds_dir.parent)
    cfg = toy_config(tfds_dir.name, num_steps=1, ckpt_every=1)  # relative to the current directory
    trainer.Trainer(cfg, tmp_path / "run").train()
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["data"]["dir"] == str(tfds_dir)
    monkeypatch.chdir(tmp_path)  # from elsewhere, the workdir resumes with its stored config
    state = trainer.Trainer(_replace(checkpoint.load_config(tmp_path / "run"), **{"train.num_steps": 2}),
                            tmp_path / "run").train()
    assert int(state.step) == 2


# -------------------------------------------------------------------------------------- debris
def test_a_failed_start_leaves_no_debris(tfds_dir, tmp_path, monkeypatch):
    bad = _replace(toy_config(tfds_dir, num_steps=2), **{"data.dir": str(tmp_path / "missing")})
    with pytest.raises(UserError):
        trainer.Trainer(bad, tmp_path / "new").train()
    assert not (tmp_path / "new").exists()

    def broken(self):
        raise RuntimeError("compile failed")

    monkeypatch.setattr(trainer.Trainer, "create_state", broken)
    with pytest.raises(RuntimeError, match="compile failed"):
        trainer.Trainer(toy_config(tfds_dir, num_steps=2), tmp_path / "new").train()
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------- lock
_HOLD = """
import sys, time
from teco_jax.workdir import Lock
Lock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_names_its_holder_and_a_killed_holder_does_not_block(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(wd.WorkdirError, match=rf"in use by another trainer: pid {proc.pid} on host \S+"):
            wd.Lock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / wd.LOCK_FILE).exists()  # stale: its holder is dead
    with wd.Lock(tmp_path):
        assert json.loads((tmp_path / wd.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / wd.LOCK_FILE).exists()  # released on exit


def test_a_second_trainer_on_a_held_workdir_exits_at_once(tfds_dir, trained):
    proc = _holder(trained)
    try:
        before = _snapshot(trained)
        before.pop(wd.LOCK_FILE)
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "teco_jax.train", f"--config=tests/helpers/toy_task.py:{tfds_dir}",
                              f"--workdir={trained}", "--config.train.num_steps=4"], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and f"pid {proc.pid} on host" in lines[-1], out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    after = _snapshot(trained)
    after.pop(wd.LOCK_FILE)
    assert after == before
    assert elapsed < 120


# ------------------------------------------------------------------------------ CLI one-liners
def test_cli_bad_resume_is_one_line(tfds_dir, trained):
    before = _snapshot(trained)
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", f"--config=tests/helpers/toy_task.py:{tfds_dir}",
                          f"--workdir={trained}", "--config.model.width=64"], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "error: " in out.stderr and "model.width=8" in out.stderr and "model.width=64" in out.stderr
    assert _snapshot(trained) == before


@pytest.mark.parametrize("spec, message", [("configs/nope.py:tiny", "no config file configs/nope.py"),
                                           ("configs/teco_dmlab.py:tinyy", "unknown preset 'tinyy'")])
def test_cli_bad_config_spec_is_one_line(spec, message):
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", "--config", spec, "--dry_run"], cwd=REPO,
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr


def test_cli_accepts_a_saved_config_json(tmp_path):
    """`--config WORKDIR/config.json` runs with a run's saved settings (configs/saved.py); a
    missing one is a one-line error."""
    from teco_jax import checkpoint, config_base

    config = config_base.from_file("configs/teco_dmlab.py:tiny")
    with config.unlocked():
        config.model.vqgan_dir = "random"
    checkpoint.save_config(tmp_path / "run", config)
    assert config_base.from_file(f"configs/saved.py:{tmp_path / 'run'}").to_dict() == \
        config_base.from_file(f"configs/saved.py:{tmp_path / 'run' / 'config.json'}").to_dict()
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", "--config", str(tmp_path / "run" / "config.json"),
                          "--dry_run"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "total (excluding the VQ-GAN)" in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", "--config", str(tmp_path / "nope.json"), "--dry_run"],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "nope.json: no such file" in out.stderr, out.stderr


def test_cli_missing_data_dir_is_one_line(tfds_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "teco_jax.train", f"--config=tests/helpers/toy_task.py:{tfds_dir}",
                          f"--workdir={tmp_path / 'run'}", f"--config.data.dir={tmp_path / 'nowhere'}"], cwd=REPO,
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: config.data.dir={tmp_path / 'nowhere'}: no such directory", out.stderr
    assert not (tmp_path / "run").exists()


def test_keys_added_to_the_code_since_a_run_began_take_their_defaults(tfds_dir, trained):
    stored = json.loads((trained / "config.json").read_text())
    del stored["optim"]["clip_norm"]  # as if the run predated the key
    (trained / "config.json").write_text(json.dumps(stored))
    changes = wd.check_resume(trained, toy_config(tfds_dir, num_steps=3))
    assert changes["optim.clip_norm"] == (wd.MISSING, 0.0)


def test_a_switch_the_code_retired_is_ignored_when_it_was_off_and_refused_when_on(tfds_dir, trained):
    path = trained / "config.json"
    original = path.read_text()
    try:
        stored = json.loads(original)
        stored["model"]["retired_switch"] = False  # as if the run predated its removal, with it off
        path.write_text(json.dumps(stored))
        changes = wd.check_resume(trained, toy_config(tfds_dir, num_steps=3))
        assert changes["model.retired_switch"] == (False, wd.MISSING)
        stored["model"]["retired_switch"] = True  # on: the model it trained is not this code's
        path.write_text(json.dumps(stored))
        with pytest.raises(wd.WorkdirError, match=r"model.retired_switch=true, a setting this version .* no longer"):
            wd.check_resume(trained, toy_config(tfds_dir, num_steps=3))
    finally:
        path.write_text(original)
