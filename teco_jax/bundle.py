"""Parameter-only bundles: a trained TECO and its VQ-GAN in one small, self-contained directory.

    python -m teco_jax.bundle --teco runs/teco --out checkpoints/maze_smooth [--step N]
    wm = WorldModel.load("checkpoints/maze_smooth")     # needs nothing else: no workdir, no dataset

A training workdir holds optimizer state, the discriminator and the data-iterator state,
and names its VQ-GAN by path. A bundle keeps only what sampling needs:

    OUT/teco.json, OUT/teco.msgpack     TECO's config and parameters
    OUT/vqgan.json, OUT/vqgan.msgpack   its VQ-GAN's config and parameters (no discriminator)
    OUT/info.json                       provenance: source workdirs, steps, parameter counts, date

Parameters are stored as float32 msgpack (flax.serialization). The bundle is written to a
temporary sibling directory and renamed when complete, so a half-written one never exists.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx, serialization

from teco_jax.checkpoint import load_config
from teco_jax.nn.util import count_params

FILES = ("teco.json", "teco.msgpack", "vqgan.json", "vqgan.msgpack", "info.json")


def is_bundle(path: Path | str) -> bool:
    return (Path(path) / "teco.msgpack").is_file()


def _params_bytes(module: nnx.Module) -> bytes:
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
    from teco_jax import config_base
    from teco_jax.models.teco import TECO

    return TECO(config.model, rngs=nnx.Rngs(0), dtype=config_base.compute_dtype(config))


def build_vqgan(config: ml_collections.ConfigDict) -> nnx.Module:
    from teco_jax import config_base
    from teco_jax.models.vqgan import VQGAN

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


def load_vqgan(path: Path | str) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """The VQ-GAN of a bundle and its config (TECO's parameters are not read): a bundle can
    stand in for a VQ-GAN workdir (encoding data, training a new TECO on its codes)."""
    path = Path(path)
    vq_config = _read_config(path / "vqgan.json")
    vqgan = build_vqgan(vq_config)
    _load_params(vqgan, path / "vqgan.msgpack")
    return vqgan, vq_config


def load(path: Path | str) -> Bundle:
    """Both models of a bundle directory, their configs checked against each other first."""
    from teco_jax.world_model import check_compatible

    path = Path(path)
    config, vq_config = _read_config(path / "teco.json"), _read_config(path / "vqgan.json")
    check_compatible(config, vq_config, path / "teco.json", path / "vqgan.json")
    teco, vqgan = build_teco(config), build_vqgan(vq_config)
    _load_params(teco, path / "teco.msgpack")
    _load_params(vqgan, path / "vqgan.msgpack")
    info = path / "info.json"
    step = json.loads(info.read_text()).get("teco_step") if info.is_file() else None
    return Bundle(teco, config, vqgan, vq_config, step)


def export(teco_dir: Path | str, out: Path | str, step: int | None = None,
           vqgan_dir: Path | str | None = None) -> dict:
    """Write the bundle of a TECO workdir (checkpoint `step`, default the latest) to `out`;
    returns its info.json contents. Refuses to overwrite an existing `out`."""
    from teco_jax import world_model

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another --out")
    teco_dir = Path(teco_dir)
    vq_dir = Path(vqgan_dir) if vqgan_dir is not None else world_model.find_vqgan_dir(load_config(teco_dir))
    wm = world_model.WorldModel.load(teco_dir, step=step, vqgan_dir=vq_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = ml_collections.ConfigDict(wm.config.to_dict())
    config.model.vqgan_dir = ""  # the bundle's own VQ-GAN is the one: no path outside it
    (tmp / "teco.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    (tmp / "vqgan.json").write_text(wm.vq_config.to_json_best_effort(indent=2, sort_keys=True))
    (tmp / "teco.msgpack").write_bytes(_params_bytes(wm.teco))
    (tmp / "vqgan.msgpack").write_bytes(_params_bytes(wm.vqgan))
    if is_bundle(vq_dir):  # a TECO trained on the codes of another bundle's VQ-GAN
        vq_info = json.loads((vq_dir / "info.json").read_text()) if (vq_dir / "info.json").is_file() else {}
        vq_source, vq_step = vq_info.get("vqgan_workdir", str(vq_dir.resolve())), vq_info.get("vqgan_step")
    else:
        vq_source, vq_step = str(vq_dir.resolve()), world_model.checkpoint_steps(vq_dir)[-1]
    info = {"teco_workdir": str(teco_dir.resolve()), "teco_step": wm.step,
            "vqgan_workdir": vq_source, "vqgan_step": vq_step,
            "teco_params": count_params(wm.teco), "vqgan_params": count_params(wm.vqgan),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    info["bytes"] = sum((tmp / f).stat().st_size for f in FILES)
    tmp.rename(out)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teco", type=Path, required=True, help="TECO training workdir")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write (must not exist)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--vqgan", type=Path, default=None, help="VQ-GAN workdir (default: the one TECO records)")
    args = p.parse_args(argv)
    try:
        info = export(args.teco, args.out, args.step, args.vqgan)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: TECO step {info['teco_step']} ({info['teco_params']:,} parameters), VQ-GAN step "
          f"{info['vqgan_step']} ({info['vqgan_params']:,}), {info['bytes'] / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
