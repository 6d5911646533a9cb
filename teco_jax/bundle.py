"""Export a parameter-only bundle: a trained TECO and its VQ-GAN in one small, self-contained directory.

    python -m teco_jax.bundle --teco runs/teco --out checkpoints/maze_smooth [--step N]
    wm = WorldModel.load("checkpoints/maze_smooth")     # needs nothing else: no workdir, no dataset

A training workdir holds optimizer state, the discriminator and the data-iterator state,
and names its VQ-GAN by path. A bundle keeps only what sampling needs:

    OUT/teco.json, OUT/teco.msgpack     TECO's config and parameters
    OUT/vqgan.json, OUT/vqgan.msgpack   its VQ-GAN's config and parameters (no discriminator)
    OUT/info.json                       provenance: source workdirs, steps, parameter counts, date

Parameters are stored as float32 msgpack (flax.serialization). The bundle is written to a
temporary sibling directory and renamed when complete, so a half-written one never exists.
The format itself (reading, writing, `is_bundle`) is teco_jax/bundle_format.py; this
module is the export command, built on `WorldModel.load`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path

import ml_collections

from teco_jax import bundle_format
from teco_jax.bundle_format import FILES
from teco_jax.checkpoint import checkpoint_steps, load_config
from teco_jax.compat import find_vqgan_dir
from teco_jax.nn.util import count_params
from teco_jax.world_model import WorldModel


def export(teco_dir: Path | str, out: Path | str, step: int | None = None,
           vqgan_dir: Path | str | None = None) -> dict:
    """Write the bundle of a TECO workdir (checkpoint `step`, default the latest) to `out`;
    returns its info.json contents. Refuses to overwrite an existing `out`."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another --out")
    teco_dir = Path(teco_dir)
    vq_dir = Path(vqgan_dir) if vqgan_dir is not None else find_vqgan_dir(load_config(teco_dir))
    wm = WorldModel.load(teco_dir, step=step, vqgan_dir=vq_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = ml_collections.ConfigDict(wm.config.to_dict())
    config.model.vqgan_dir = ""  # the bundle's own VQ-GAN is the one: no path outside it
    (tmp / "teco.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    (tmp / "vqgan.json").write_text(wm.vq_config.to_json_best_effort(indent=2, sort_keys=True))
    (tmp / "teco.msgpack").write_bytes(bundle_format.params_bytes(wm.teco))
    (tmp / "vqgan.msgpack").write_bytes(bundle_format.params_bytes(wm.vqgan))
    if bundle_format.is_bundle(vq_dir):  # a TECO trained on the codes of another bundle's VQ-GAN
        vq_info = json.loads((vq_dir / "info.json").read_text()) if (vq_dir / "info.json").is_file() else {}
        vq_source, vq_step = vq_info.get("vqgan_workdir", str(vq_dir.resolve())), vq_info.get("vqgan_step")
    else:
        vq_source, vq_step = str(vq_dir.resolve()), checkpoint_steps(vq_dir)[-1]
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
