"""A training run's directory: what a resume may change, who may write it, what it records.

    WORKDIR/config.json           the config of the latest start (models are rebuilt from it)
    WORKDIR/config_history.jsonl  one line per start: time, host, pid, step, and every key
                                  that differs from the stored config, with both values
    WORKDIR/lock                  held by the running trainer (process 0), with its pid and host
    WORKDIR/checkpoints/...       see teco_jax/checkpoint.py

Resuming may change only the keys in RESUMABLE (how long and how to train, where the
data is, the mesh); any other changed key would change the model, its parameters or
the data order, so the trainer refuses it in one line, before it writes anything. Keys
the stored config lacks (added to the code since the run began) take their defaults; keys
the code no longer has (switches measured and retired) are ignored where the run had them
off, and refused where it had them on.

Paths in config.json are absolute: `data.dir` and `model.vqgan_dir` are resolved against
the directory the trainer was started from, so the workdir works from any directory.

The lock is an advisory `flock` on WORKDIR/lock: the kernel releases it when its process
exits, however it exits (SIGKILL included), so a stale lock never blocks a later run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import ml_collections

from teco_jax.checkpoint import save_config
from teco_jax.errors import UserError

#: Keys (exact, or a prefix ending in ".") that may differ from the stored config on resume.
RESUMABLE = ("train.", "data.dir", "data.read_threads", "data.prefetch", "mesh.shape", "sharding_rules",
             "optim.lr", "optim.end_lr", "optim.warmup_steps", "optim.decay_steps", "optim.b1", "optim.b2",
             "optim.eps", "optim.weight_decay", "model.sampling.",  # sampling: evaluation images only
             "model.remat", "model.loss_chunk")  # memory against time: the same numbers
#: Config keys holding paths; stored absolute.
PATH_KEYS = ("data.dir", "model.vqgan_dir", "train.init_from")
CONFIG_FILE, HISTORY_FILE, LOCK_FILE = "config.json", "config_history.jsonl", "lock"
MISSING = "<missing>"  # a key one of two configs does not have


class WorkdirError(UserError):
    """The workdir cannot be used as asked: held by another trainer, or a config it cannot resume."""


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """{"a.b.c": value} of a config, values as JSON stores them (tuples become lists)."""
    raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    raw = json.loads(json.dumps(raw, default=str))
    out: dict[str, Any] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(raw, "")
    return out


def resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def config_changes(stored: ml_collections.ConfigDict | dict, new: ml_collections.ConfigDict) -> dict[str, tuple]:
    """{key: (stored value, new value)} for every key that differs; a key the stored config
    does not have (added to the code since) is reported with the stored value MISSING."""
    a, b = flatten(stored), flatten(new)
    return {k: (a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, MISSING) != b.get(k, MISSING)}


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` with the PATH_KEYS it has made absolute (from the current directory).
    Empty values and the placeholder "random" (tests) stay as they are."""
    def value(key):
        section, leaf = key.split(".")
        return config.get(section, {}).get(leaf)

    updates = {k: str(Path(value(k)).expanduser().absolute()) for k in PATH_KEYS
               if value(k) and value(k) != "random" and not Path(value(k)).is_absolute()}
    if not updates:
        return config
    new = ml_collections.ConfigDict(config.to_dict())
    for key, path in updates.items():
        section, leaf = key.split(".")
        new[section][leaf] = path
    if config.is_locked:
        new.lock()
    return new


def check_resume(workdir: Path | str, config: ml_collections.ConfigDict) -> dict[str, tuple]:
    """Compare `config` with the workdir's stored config; raise WorkdirError naming the first
    changed key that a resume may not change. Returns the allowed changes (empty for a new run)."""
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WorkdirError(f"{path}: not valid JSON ({e}); restore it from {HISTORY_FILE} or start a new "
                           f"--workdir") from e
    changes = config_changes(absolute_paths(ml_collections.ConfigDict(stored)), config)
    for key, (old, new) in changes.items():
        if old == MISSING:  # a key added to the code after this run started: its default applies
            continue
        if new == MISSING:  # a switch the code no longer has: fine if the run had it off
            if old in (False, 0, 0.0, "", None):
                continue
            raise WorkdirError(f"{workdir} was trained with {key}={json.dumps(old)}, a setting this version of "
                               f"teco_jax no longer has (measured and retired: docs/cpu_world.md); resume it with "
                               f"the version that trained it, or start a new --workdir")
        if not resumable(key):
            raise WorkdirError(
                f"{workdir} was trained with {key}={json.dumps(old)}; this run sets {key}={json.dumps(new)}. "
                f"A resume may change only {', '.join(r + '*' if r.endswith('.') else r for r in RESUMABLE)}; "
                f"use a new --workdir to change {key}")
    return changes


def record_config(workdir: Path | str, config: ml_collections.ConfigDict, step: int,
                  changes: dict[str, tuple]) -> None:
    """Write config.json (atomically) and append this start to config_history.jsonl."""
    save_config(workdir, config)
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "pid": os.getpid(),
             "step": int(step), "changes": {k: {"stored": a, "new": b} for k, (a, b) in changes.items()}}
    with open(Path(workdir) / HISTORY_FILE, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Lock:
    """WORKDIR/lock, held while a trainer runs. `acquire` raises WorkdirError naming the holder."""

    def __init__(self, workdir: Path | str):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def acquire(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WorkdirError(f"{self.workdir} is in use by another trainer: {self.holder()}; stop it, or "
                                   f"use another --workdir") from None
            # The holder we waited on may have removed the file after we opened it: retry on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
