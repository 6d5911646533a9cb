"""TECO training on VQ-GAN codes: L = L_VQ + L_recon + L_prior, with DropLoss and action dropout.

As in the authors' release, L_recon sums the cross-entropy over the H x W code positions
of a frame and averages over frames; L_prior is the mean cross-entropy over masked
tokens times the N tokens of a frame. DropLoss runs the decoder and the prior only on a
per-example subset of frames drawn without replacement from [n_cond, T).

Not in the paper, and off in its presets (models/options.py): z_dropout, and the memory's map
of earlier frames that the decoder reads with config.model.memory (models/memory.py; its
motion "fit" is resolved before training, tasks/motion_fit.py). Evaluation: tasks/teco_eval.py.

Dimension keys: B batch, T frames, n frames kept by DropLoss, H/W VQ-GAN grid, h/w TECO
grid, V VQ-GAN vocabulary, E VQ-GAN embedding dim, D TECO embedding dim.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from teco_jax import config_base, losses
from teco_jax.compat import vqgan_dir_of
from teco_jax.errors import UserError
from teco_jax.loading import load_vqgan
from teco_jax.models.maskgit import mask_tokens
from teco_jax.models.options import Options
from teco_jax.models.teco import TECO
from teco_jax.nn.util import count_params, take_frames
from teco_jax.tasks import base, teco_eval
from teco_jax.tasks.motion_fit import fit_motion


def drop_loss_indices(key: jax.Array, batch: int, num_frames: int, n_cond: int, rate: float) -> jax.Array:
    """Frames that get the decoder and prior losses: (B, n) int32, sorted, distinct, in [n_cond, T),
    n = max(1, round((1 - rate) * (T - n_cond))), drawn without replacement per example."""
    candidates = num_frames - n_cond
    keep = max(1, int(round((1.0 - rate) * candidates)))
    if keep >= candidates:
        return jnp.broadcast_to(jnp.arange(n_cond, num_frames, dtype=jnp.int32), (batch, candidates))
    order = jnp.argsort(jax.random.uniform(key, (batch, candidates)), axis=1)
    return jnp.sort(order[:, :keep], axis=1).astype(jnp.int32) + n_cond


def action_dropout(key: jax.Array, actions_BT: jax.Array, rate: float, null_action: int) -> jax.Array:
    """With probability `rate` per video, replace all its actions by the null action."""
    drop = jax.random.bernoulli(key, rate, actions_BT.shape[:1])
    return jnp.where(drop[:, None], null_action, actions_BT)


def z_dropout(key: jax.Array, z_BnhwD: jax.Array, rate: float) -> jax.Array:
    """With probability `rate` per (example, frame), zero the z_t that the decoder reads.

    Not in the paper (off in its presets): without it the decoder can take each frame from
    the posterior z_t, and only the prior's loss pushes h_t to carry the frame."""
    keep = jax.random.bernoulli(key, 1.0 - rate, z_BnhwD.shape[:2])
    return jnp.where(keep[:, :, None, None, None], z_BnhwD, jnp.zeros_like(z_BnhwD))


def frame_loss_sums(model: TECO, frames: dict[str, jax.Array], label_smoothing: float, chunk: int = 0
                    ) -> dict[str, jax.Array]:
    """The decoder's and the prior's losses summed over F frames (the loss divides).

    frames: z, h (F, h, w, D) the decoder's inputs; codes (F, H, W) its targets; tokens,
    masked, mask (F, N) the prior's targets, masked input and mask; cond (F, N, C) its
    condition. Returns sums of recon_ce and recon_correct over all F*H*W positions (the
    decoder's label-smoothed cross-entropy) and of prior_ce and prior_correct over the
    masked tokens (no smoothing, as in the paper's code).

    chunk > 0 (config model.loss_chunk) runs groups of `chunk` frames one after another
    (lax.map), each recomputed in the backward pass (jax.checkpoint): the decoder's and the
    prior's activations, the largest tensors of a step without DropLoss, then exist for one
    group at a time. The sums are the same up to float rounding."""
    def sums(f):
        memory = f["memory"][None] if "memory" in f else None
        logits = model.decode_logits(f["z"][None], f["h"][None], memory)[0]
        valid = f["valid"].astype(jnp.float32)[:, None, None]
        ce = losses.cross_entropy_per_position(logits, f["codes"], label_smoothing)
        correct = (jnp.argmax(logits, axis=-1) == f["codes"]).astype(jnp.float32)
        prior_ce, prior_correct = model.prior.masked_loss_sums(f["tokens"], f["masked"],
                                                               f["mask"] & f["valid"][:, None], f["cond"])
        return {"recon_ce": jnp.sum(ce * valid), "recon_correct": jnp.sum(correct * valid),
                "prior_ce": prior_ce, "prior_correct": prior_correct}

    count = frames["codes"].shape[0]
    frames = {**frames, "valid": jnp.ones((count,), bool)}
    if chunk <= 0 or chunk >= count:
        return sums(frames)
    pad = -count % chunk  # padded frames are not valid: they add nothing
    groups = {k: jnp.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)).reshape((-1, chunk) + v.shape[1:])
              for k, v in frames.items()}
    return jax.tree.map(jnp.sum, jax.lax.map(jax.checkpoint(sums), groups))


def vq_embedding_table(vqgan_dir: str | Path) -> np.ndarray:
    """The VQ-GAN's embedding of every code, (V, E): what TECO's encoder reads for each code."""
    vqgan, vq_config = load_vqgan(vqgan_dir)
    codes = jnp.arange(vq_config.model.codebook_size, dtype=jnp.int32)
    return np.asarray(vqgan.codebook.lookup(codes), np.float32)


@base.register
class TECOTask(base.Task):
    name = "teco"
    batch_keys = ("codes", "actions")

    def resolve(self, stored: ml_collections.ConfigDict | None) -> None:
        """config.model.memory.motion = "fit": the table of the resumed run (`stored`, its config),
        or one fitted on the training data (tasks/motion_fit.py). Either is written into the
        config, which the run stores."""
        memory = self.config.model.get("memory", None)
        if memory is None or memory.motion != "fit":
            return
        kept = Options.of(stored.model).memory.motion if stored is not None else ""
        fitted = kept if kept not in ("", "fit") else fit_motion(self.config)
        if fitted:
            memory.motion = fitted

    def build_model(self, rngs: nnx.Rngs) -> TECO:
        return TECO(self.config.model, rngs=rngs, dtype=config_base.compute_dtype(self.config))

    def preflight(self, data_meta) -> None:
        """The code dataset against config.model: codes, vocabulary, code grid, actions, its VQ-GAN;
        and the model's own settings that no dataset can catch."""
        Options.of(self.config.model)  # typed, and checked
        rate = self.config.model.action_dropout
        if not 0.0 <= rate <= 1.0:
            raise UserError(f"config.model.action_dropout={rate!r}: it is a probability, between 0 and 1")
        if data_meta is None:
            return
        from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

        m, where = self.config.model, self.config.data.dir
        base.check_frame_feature(self.config, data_meta, "codes", "TECO", f"encode them first (python -m "
                                 f"teco_jax.encode --vqgan VQGAN_DIR --data {where} --out CODES) and set "
                                 f"config.data.dir=CODES")
        if data_meta.vocab_size is not None and int(data_meta.vocab_size) != int(m.vq_vocab):
            raise UserError(f"config.model.vq_vocab={m.vq_vocab}, but the code dataset {where} has "
                            f"{data_meta.vocab_size} codes (its VQ-GAN's codebook_size): set "
                            f"config.model.vq_vocab={data_meta.vocab_size}")
        grid = tuple(int(x) for x in m.vq_grid)
        if tuple(data_meta.frame_shape) != grid:
            raise UserError(f"config.model.vq_grid={grid}, but the code dataset {where} has code grids of "
                            f"{tuple(data_meta.frame_shape)}: set config.model.vq_grid={tuple(data_meta.frame_shape)}")
        if m.use_actions:
            tfds_meta.check_actions(data_meta, int(m.num_actions), "config.model.num_actions", data_dir=where)
        self._check_recorded_vqgan(data_meta.vqgan)

    def _check_recorded_vqgan(self, recorded: str) -> None:
        """With config.model.vqgan_dir empty, the code dataset's VQ-GAN (`recorded`) must exist (preflight)."""
        where = self.config.data.dir
        if self.config.model.vqgan_dir:
            return
        if not recorded:
            raise UserError(f"config.model.vqgan_dir is empty and the code dataset {where} does not name its "
                            f"VQ-GAN: set config.model.vqgan_dir")
        if not Path(recorded).exists():
            raise UserError(f"the code dataset {where} was encoded by the VQ-GAN {recorded}, which does not "
                            f"exist (config.model.vqgan_dir is empty, so TECO uses it): set config.model.vqgan_dir")

    # ------------------------------------------------------------ constants
    def vqgan_dir(self) -> str:
        """The VQ-GAN: config.model.vqgan_dir, else the one named by the code dataset ('' if none)."""
        return vqgan_dir_of(self.config)

    @functools.cached_property
    def vq_embeddings(self) -> np.ndarray:
        m = self.config.model
        path = self.vqgan_dir()
        if path == "random":  # tests and benchmarks without a trained VQ-GAN
            table = np.random.default_rng(0).normal(size=(m.vq_vocab, m.vq_embed_dim)).astype(np.float32)
        elif not path:
            raise UserError("TECO needs its VQ-GAN: set config.model.vqgan_dir or train on a code dataset "
                            "written by teco_jax.encode (it records the VQ-GAN)")
        else:
            table = vq_embedding_table(path)
        if table.shape != (m.vq_vocab, m.vq_embed_dim):
            raise UserError(f"the VQ-GAN at {path} has {table.shape[0]} codes of dimension {table.shape[1]}, "
                            f"but config.model expects vq_vocab={m.vq_vocab}, vq_embed_dim={m.vq_embed_dim}")
        return table

    def constants(self) -> Any:
        return {"vq_embeddings": self.vq_embeddings}

    # ----------------------------------------------------------------- loss
    def conditioning_actions(self, model: TECO, actions_BT, key, train: bool):
        """The actions TECO is conditioned on: all null without model.use_actions; action
        dropout in training only (evaluation conditions on the true actions)."""
        m = self.config.model
        if not m.use_actions:
            return jnp.full_like(actions_BT, model.null_action)
        if train and m.action_dropout > 0:
            return action_dropout(key, actions_BT, m.action_dropout, model.null_action)
        return actions_BT

    def forward(self, model: TECO, codes_BTHW, actions_BT, key, constants, drop_rate: float,
                train: bool = True, decode: bool = True):
        """Everything the loss and the metrics need, for the frames DropLoss keeps.
        Action dropout applies in training only: evaluation conditions on the true actions.
        decode=False leaves out the decoder's logits (the loss decodes frames in chunks)."""
        m = self.config.model
        k_act, k_drop, k_prior = jax.random.split(key, 3)
        actions_BT = self.conditioning_actions(model, actions_BT, k_act, train)
        e = jnp.take(constants["vq_embeddings"], codes_BTHW, axis=0)
        z, vq = model.encode(e)
        a_emb = model.embed_actions(actions_BT)
        h = model.temporal(z, a_emb)
        memory = model.earlier_frames(actions_BT, e)
        b, t = codes_BTHW.shape[:2]
        idx = drop_loss_indices(k_drop, b, t, m.n_cond, drop_rate)
        h_n, z_n, codes_n = take_frames(h, idx), take_frames(z, idx), take_frames(codes_BTHW, idx)
        memory_n = None if memory is None else take_frames(memory, idx)
        zcodes_n = take_frames(vq["codes"], idx - m.n_cond)
        if train and Options.of(m).z_dropout > 0:  # the decoder must then read the frame off h_t alone
            z_n = z_dropout(jax.random.fold_in(key, 1), z_n, m.z_dropout)
        out = dict(idx=idx, h=h_n, z=z_n, z_codes=zcodes_n, codes=codes_n, vq=vq, key=k_prior, memory=memory_n)
        if decode:
            out["logits"] = model.decode_logits(z_n, h_n, memory_n)
        return out

    def prior_condition(self, out: dict) -> jax.Array:
        """What the MaskGIT prior is conditioned on: h_t (diagnostics may substitute an oracle)."""
        return out["h"]

    def loss(self, model, batch, key, step, constants):
        m = self.config.model
        out = self.forward(model, batch["codes"], batch["actions"], key, constants, m.drop_loss_rate, decode=False)
        cond = self.prior_condition(out)
        b, n = out["codes"].shape[:2]
        n_tok = cond.shape[-3] * cond.shape[-2]
        tokens = out["z_codes"].reshape(b * n, n_tok)
        masked, mask = mask_tokens(out["key"], tokens, mask_id=model.prior.mask_id)
        flat = lambda x: x.reshape((b * n,) + x.shape[2:])  # noqa: E731
        frames = dict(z=flat(out["z"]), h=flat(out["h"]), codes=flat(out["codes"]), tokens=tokens, masked=masked,
                      mask=mask, cond=cond.reshape(b * n, n_tok, cond.shape[-1]))
        if out["memory"] is not None:
            frames["memory"] = flat(out["memory"])
        sums = frame_loss_sums(model, frames, m.label_smoothing, Options.of(m).loss_chunk)
        hw = out["codes"].shape[-2] * out["codes"].shape[-1]
        positions = b * n * hw
        masked_count = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
        recon_ce, prior_ce = sums["recon_ce"] / positions, sums["prior_ce"] / masked_count
        vq = out["vq"]
        total = vq["loss"] + recon_ce * hw + prior_ce * n_tok
        metrics = {"recon_ce": recon_ce, "prior_ce": prior_ce, "vq": vq["loss"], "perplexity": vq["perplexity"],
                   "usage": vq["usage"], "recon_acc": sums["recon_correct"] / positions,
                   "prior_acc": sums["prior_correct"] / masked_count}
        return total, metrics

    # ----------------------------------------------------------- evaluation
    def evaluate(self, model, batches: Iterator[dict[str, np.ndarray]], constants) -> dict[str, float]:
        """Teacher-forced metrics on test clips (tasks/teco_eval.py)."""
        return teco_eval.evaluate(self, model, batches, constants)

    def describe(self, model) -> dict[str, int]:
        parts = {
            "encoder (E)": [model.encoder, model.start_post],
            "codebook": [model.codebook],
            "temporal transformer": [model.temporal, model.action_embed],
            "maskgit prior": [model.prior],
            "decoder (D)": [model.decoder],
        }
        if model.decoder.memory_in is not None:
            parts["  of which the memory reader (model.memory)"] = [model.decoder.memory_in]
        counts = {k: sum(_count(p) for p in v) for k, v in parts.items()}
        counts["total (excluding the VQ-GAN)"] = count_params(model)
        return counts


def _count(part) -> int:
    return count_params(part) if isinstance(part, nnx.Module) else int(np.prod(part.shape))
