"""The small interface between a trainable model and the training loop.

A task turns a config into a model and a loss. The loop (teco_jax/trainer.py) does
everything else once for all tasks: optimizer, sharding, checkpoints, logging, resume.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np
from flax import nnx

from teco_jax.errors import UserError
from teco_jax.nn.util import count_params

Metrics = dict[str, jax.Array]


class Task(abc.ABC):
    """One trainable model. Subclasses set `name` and implement the abstract methods."""

    name: str = ""
    #: batch keys the loss reads; the loop drops the others before sending batches to devices
    batch_keys: tuple[str, ...] = ()

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    @abc.abstractmethod
    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """The model with freshly initialised parameters (everything the optimizer trains)."""

    @abc.abstractmethod
    def loss(self, model: nnx.Module, batch: Mapping[str, jax.Array], key: jax.Array, step: jax.Array,
             constants: Any) -> tuple[jax.Array, Metrics]:
        """Scalar loss to minimise and metrics to log (scalars). Runs inside jit."""

    def resolve(self, stored: ml_collections.ConfigDict | None) -> None:
        """Work out config values that depend on the data before the model is built (the trainer
        calls it first; e.g. TECO's fitted motion). `stored`: the workdir's config when the run
        resumes, whose resolved values are taken as they are (no data is read for them)."""

    def preflight(self, data_meta: Any | None) -> None:
        """Check the config against the training data before anything is compiled or written.

        `data_meta`: the `tfds_meta.DatasetMeta` of config.data.dir (None when there is no data,
        e.g. a dry run). Raise `teco_jax.errors.UserError` with a one-line message naming the
        config key and the dataset on a mismatch (frame size, vocabulary, action count)."""

    def constants(self) -> Any:
        """Frozen arrays the loss needs (e.g. LPIPS weights), passed to it as an argument."""
        return None

    def prepare_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host-side conversion of a pipeline batch (runs before sharding onto devices)."""
        return {k: batch[k] for k in self.batch_keys}

    def visualize(self, model: nnx.Module, batch: Mapping[str, jax.Array], constants: Any) -> np.ndarray | None:
        """A uint8 (H, W, 3) picture of what the model does on `batch`, or None."""
        return None

    def evaluate(self, model: nnx.Module, batches: Iterator[dict[str, np.ndarray]], constants: Any) -> dict[str, float]:
        """Test-set metrics; `batches` is a finite iterator of pipeline batches."""
        return {}

    def describe(self, model: nnx.Module) -> dict[str, int]:
        """Parameter counts by component, printed by the dry run."""
        return {"total": count_params(model)}


def data_meta(config: ml_collections.ConfigDict):
    """The `tfds_meta.DatasetMeta` of config.data.dir, or a one-line UserError when it is empty,
    missing or not a dataset. Reads teco_meta.json only."""
    from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

    data_dir = config.data.dir
    if not data_dir:
        raise UserError("config.data.dir is empty: point it at a dataset written by teco_jax.data.build "
                        "or teco_jax.encode (--config.data.dir=...)")
    if not Path(data_dir).is_dir():
        raise UserError(f"config.data.dir={data_dir}: no such directory")
    try:
        return tfds_meta.load_meta(data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"config.data.dir: {e}") from e


def check_frame_feature(config: ml_collections.ConfigDict, data_meta: Any, expected: str, trainer: str,
                        fix: str) -> None:
    """For `preflight`: the dataset holds `expected` ("video" frames or VQ-GAN "codes"), else a
    one-line error naming config.data.dir, what `trainer` trains on, and `fix`."""
    what = {"video": "raw frames", "codes": "VQ-GAN codes"}
    if data_meta.frame_feature != expected:
        raise UserError(f"config.data.dir={config.data.dir} holds {what.get(data_meta.frame_feature, '?')}, but "
                        f"{trainer} trains on {what[expected]}: {fix}")


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Task]:
    if name not in _REGISTRY:
        import importlib

        try:
            importlib.import_module(f"teco_jax.tasks.{name}")
        except ModuleNotFoundError:
            pass
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
