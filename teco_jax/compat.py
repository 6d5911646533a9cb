"""A TECO and its VQ-GAN: which VQ-GAN a TECO config names, and whether the two fit.

    vqgan_dir_of(config)         # model.vqgan_dir, else the VQ-GAN its code dataset records
    find_vqgan_dir(config)       # the same as a Path, an error naming what is missing if none
    check_compatible(teco_config, vq_config, teco_dir, vq_dir)   # ValueError on any mismatch

Configs only: nothing here reads parameters or builds a model (`teco_jax.bundle_format`,
`teco_jax.loading` and `teco_jax.world_model` build on it).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections


def vqgan_dir_of(config: ml_collections.ConfigDict) -> str:
    """The VQ-GAN a TECO config names, as written: model.vqgan_dir (possibly 'random': an
    untrained embedding table), else the VQ-GAN recorded in the teco_meta.json of its code
    dataset (data.dir); '' when neither names one. FileNotFoundError when data.dir is set
    but holds no readable dataset."""
    named = config.model.get("vqgan_dir", "")
    if named:
        return named
    data_dir = config.data.get("dir", "")
    if not data_dir:
        return ""
    from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

    _, version_dir = tfds_meta.find_dataset(data_dir)
    return tfds_meta.DatasetMeta.load(version_dir).vqgan


def find_vqgan_dir(config: ml_collections.ConfigDict) -> Path:
    """The VQ-GAN workdir (or bundle) of a TECO config (`vqgan_dir_of`), or an error that says
    why there is none and to pass vqgan_dir=."""
    named = config.model.get("vqgan_dir", "")
    if named == "random":
        raise ValueError("this TECO was trained with a random VQ embedding table (model.vqgan_dir='random'): "
                         "it has no VQ-GAN to decode frames with; pass vqgan_dir=")
    data_dir = config.data.get("dir", "")
    if not named and not data_dir:
        raise ValueError("the TECO config names no VQ-GAN (model.vqgan_dir and data.dir are empty); "
                         "pass vqgan_dir=")
    try:
        vqgan = vqgan_dir_of(config)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"cannot find the VQ-GAN: the TECO config names none (model.vqgan_dir is "
                                f"empty) and its code dataset data.dir={data_dir!r} is not readable from "
                                f"{Path.cwd()} ({e}); pass vqgan_dir=") from e
    if not vqgan:
        raise ValueError(f"the code dataset {data_dir} does not name its VQ-GAN; pass vqgan_dir=")
    return Path(vqgan)


def vqgan_grid(vq_config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(h, w) of the code grid a VQ-GAN config produces."""
    m = vq_config.model
    side = int(m.resolution) // 2 ** (len(m.channel_mult) - 1)
    return side, side


def check_compatible(teco_config: ml_collections.ConfigDict, vq_config: ml_collections.ConfigDict,
                     teco_dir: Path | str = "TECO", vqgan_dir: Path | str = "VQ-GAN") -> None:
    """ValueError naming every TECO field (vq_vocab, vq_embed_dim, vq_grid) its VQ-GAN contradicts."""
    if vq_config.get("task") != "vqgan":
        raise ValueError(f"{vqgan_dir} holds a {vq_config.get('task')!r} run, not a VQ-GAN")
    m, v = teco_config.model, vq_config.model
    pairs = [("vq_vocab", int(m.vq_vocab), "codebook_size", int(v.codebook_size)),
             ("vq_embed_dim", int(m.vq_embed_dim), "latent_dim", int(v.latent_dim)),
             ("vq_grid", tuple(int(x) for x in m.vq_grid), "code grid", vqgan_grid(vq_config))]
    wrong = [f"model.{name}={mine} but the VQ-GAN's {their_name} is {theirs}"
             for name, mine, their_name, theirs in pairs if mine != theirs]
    if wrong:
        raise ValueError(f"the TECO config of {teco_dir} does not match its VQ-GAN {vqgan_dir}: "
                         + "; ".join(wrong))
