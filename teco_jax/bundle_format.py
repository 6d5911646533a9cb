"""The parameter-only bundle: a trained TECO and its VQ-GAN in one small, self-contained directory.

    DIR/teco.json, DIR/teco.msgpack     TECO's config and parameters
    DIR/vqgan.json, DIR/vqgan.msgpack   its VQ-GAN's config and parameters (no discriminator)
    DIR/info.json                       provenance: source workdirs, steps, parameter counts, date

Parameters are stored as float32 msgpack (flax.serialization). This module reads and
writes the files; `python -m teco_jax.bundle` (teco_jax/bundle.py) exports a bundle from
training workdirs, and `WorldModel.load(DIR)` loads one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx, serialization

from teco_jax import config_base
from teco_jax.compat import check_compatible
from teco_jax.models.teco import TECO
from teco_jax.models.vqgan import VQGAN

FILES = ("teco.json", "teco.msgpack", "vqgan.json", "vqgan.msgpack", "info.json")


def is_bundle(path: Path | str) -> bool:
    return (Path(path) / "teco.msgpack").is_file()


def params_bytes(module: nnx.Module) -> bytes:
    """`module`'s parameters as a float32 msgpack parameter file."""
    pure = nnx.state(module, nnx.Param).to_pure_dict()
    return serialization.msgpack_serialize(jax.tree.map(lambda x: np.asarray(x, np.float32), pure))


def read_params(path: Path) -> dict:
    """The parameters stored in `path` (a pure dict of arrays); ValueError naming the file if unreadable."""
    try:
        return serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on a corrupt file
        raise ValueError(f"{path}: not a readable parameter file ({type(e).__name__}: {e})") from e


def _load_params(module: nnx.Module, path: Path) -> None:
    """Fill `module`'s parameters from `path`; ValueError naming the file if they do not fit."""
    pure = read_params(path)
    state = nnx.state(module, nnx.Param)
    current = state.to_pure_dict()
    if jax.tree.map(np.shape, current) != jax.tree.map(np.shape, pure):
        raise ValueError(f"{path}: its parameters do not fit the model its config builds "
                         f"(config and parameters from different runs?)")
    state.replace_by_pure_dict(jax.tree.map(lambda s, x: np.asarray(x).astype(s.dtype), current, pure))
    nnx.update(module, state)


def build_teco(config: ml_collections.ConfigDict) -> nnx.Module:
    return TECO(config.model, rngs=nnx.Rngs(0), dtype=config_base.compute_dtype(config))


def build_vqgan(config: ml_collections.ConfigDict) -> nnx.Module:
    return VQGAN(config.model, rngs=nnx.Rngs(0), dtype=config_base.compute_dtype(config))


def _read_config(path: Path) -> ml_collections.ConfigDict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} is not a complete bundle: {path.name} is missing")
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


class Bundle(NamedTuple):
    teco: nnx.Module
    config: ml_collections.ConfigDict  # TECO's
    vqgan: nnx.Module
    vq_config: ml_collections.ConfigDict
    step: int | None  # the TECO training step it was exported from (info.json)


def read_vqgan(path: Path | str) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """The VQ-GAN of a bundle and its config (TECO's parameters are not read). Load VQ-GANs
    with `teco_jax.loading.load_vqgan`, which takes a bundle or a VQ-GAN workdir."""
    path = Path(path)
    vq_config = _read_config(path / "vqgan.json")
    vqgan = build_vqgan(vq_config)
    _load_params(vqgan, path / "vqgan.msgpack")
    return vqgan, vq_config


def load(path: Path | str) -> Bundle:
    """Both models of a bundle directory, their configs checked against each other first."""
    path = Path(path)
    config, vq_config = _read_config(path / "teco.json"), _read_config(path / "vqgan.json")
    check_compatible(config, vq_config, path / "teco.json", path / "vqgan.json")
    teco, vqgan = build_teco(config), build_vqgan(vq_config)
    _load_params(teco, path / "teco.msgpack")
    _load_params(vqgan, path / "vqgan.msgpack")
    info = path / "info.json"
    step = json.loads(info.read_text()).get("teco_step") if info.is_file() else None
    return Bundle(teco, config, vqgan, vq_config, step)
