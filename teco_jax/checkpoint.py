"""Checkpoints: train state, data-iterator state and config, saved together and atomically.

Layout of a workdir:
    WORKDIR/config.json               the full config of the run (models are rebuilt from it)
    WORKDIR/checkpoints/<step>/state  params, optimizer state, step, rng  (orbax)
    WORKDIR/checkpoints/<step>/data   each process's grain iterator state

Orbax writes every step into a temporary directory and renames it when complete, so
an interrupted save never leaves a checkpoint that looks valid. Restoring takes an
abstract target carrying shardings, so a checkpoint written on one mesh restores onto
another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain
from absl import logging as absl_logging
import jax
import ml_collections
import orbax.checkpoint as ocp

from teco_jax.errors import UserError


class CheckpointMismatchError(UserError):
    """A checkpoint does not fit the model or config it is being restored into."""


def save_config(workdir: Path | str, config: ml_collections.ConfigDict) -> None:
    path = Path(workdir) / "config.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
        tmp.replace(path)


def checkpoint_steps(workdir: Path | str) -> list[int]:
    """The steps saved under WORKDIR/checkpoints (complete ones only), ascending."""
    ckpt_dir = Path(workdir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.is_dir() and p.name.isdigit())


def has_checkpoint(workdir: Path | str) -> bool:
    """Whether WORKDIR/checkpoints holds a complete (renamed, not temporary) checkpoint."""
    return bool(checkpoint_steps(workdir))


def load_config(workdir: Path | str) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{workdir}: no config.json; is this a teco_jax workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def _by_path(tree: Any) -> dict[str, Any]:
    """{"params/enc/kernel/value": leaf} of a state pytree or of orbax's metadata of one."""
    def name(key):
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return {"/".join(name(k) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_arrays(path: Path, abstract_state: Any, partial: bool = False) -> None:
    """Raise CheckpointMismatchError (one line, naming the arrays) unless the checkpoint item at
    `path` holds the arrays of `abstract_state` with the same shapes (exactly those arrays, or
    with `partial`, at least those). Reads metadata only."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax warns about a metadata file it does not need
    try:
        # orbax reads metadata from absolute paths only (a relative one gives item_metadata None)
        metadata = ocp.StandardCheckpointer().metadata(Path(path).absolute()).item_metadata
    except Exception:  # noqa: BLE001 - unreadable metadata: the restore reports the problem
        return
    finally:
        absl_logging.set_verbosity(verbosity)
    if metadata is None:  # no metadata to compare with: the restore reports any problem
        return
    stored = _by_path(metadata)
    wanted = _by_path(abstract_state)
    order = lambda keys: sorted(keys, key=lambda k: (not k.startswith("params"), k))  # noqa: E731
    problems = [f"{k}: missing from the checkpoint" for k in order(set(wanted) - set(stored))]
    if not partial:
        problems += [f"{k}: in the checkpoint, not in the model" for k in order(set(stored) - set(wanted))]
    problems += [f"{k}: checkpoint {tuple(stored[k].shape)}, model {tuple(wanted[k].shape)}"
                 for k in order(set(stored) & set(wanted))
                 if not jax.dtypes.issubdtype(wanted[k].dtype, jax.dtypes.prng_key)
                 and tuple(stored[k].shape) != tuple(wanted[k].shape)]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointMismatchError(f"checkpoint {path.parent} does not match this model/config: "
                                      + "; ".join(problems[:3]) + more)


class Checkpointer:
    """Keeps the last `keep` checkpoints of a run under WORKDIR/checkpoints."""

    def __init__(self, workdir: Path | str, keep: int = 3, async_save: bool = False):
        self.directory = Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any | None = None, force: bool = False) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def check(self, abstract_state: Any, step: int) -> None:
        """See `check_arrays` (the whole train state must match)."""
        check_arrays(self.directory / str(step) / "state", abstract_state)

    def restore(self, abstract_state: Any, data_iterator: Any | None = None, step: int | None = None) -> Any:
        """Restore into `abstract_state` (ShapeDtypeStructs with shardings); also the iterator."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        self.check(abstract_state, step)
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError, TypeError) as e:
            detail = " ".join(str(e).split())  # orbax's messages span lines: keep one
            detail = detail if len(detail) <= 300 else detail[:300] + " ..."
            raise CheckpointMismatchError(
                f"checkpoint {self.directory / str(step)} does not match this model/config: {detail}") from e
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
