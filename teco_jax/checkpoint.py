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
import jax
import ml_collections
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model or config it is being restored into."""


def save_config(workdir: Path | str, config: ml_collections.ConfigDict) -> None:
    path = Path(workdir) / "config.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
        tmp.replace(path)


def load_config(workdir: Path | str) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{workdir}: no config.json; is this a teco_jax workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


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

    def restore(self, abstract_state: Any, data_iterator: Any | None = None, step: int | None = None) -> Any:
        """Restore into `abstract_state` (ShapeDtypeStructs with shardings); also the iterator."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory / str(step)} does not match this model/config: {e}") from e
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
