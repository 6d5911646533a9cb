"""TECO: Temporally Consistent Transformer (TECO.md section 3), on VQ-GAN codes.

    VQ-GAN embeddings e_t (16x16) --E(e_t, e_{t-1})--> z_t (8x8; quantized for t >= n_cond)
    tokens: [start, proj(z_0 (+) a_1), ..., proj(z_{T-2} (+) a_{T-1})] --block-causal transformer--> h_t
    p(z_t | h_t): spatial MaskGIT      D(z_t, h_t) -> logits over the VQ-GAN codes of frame t

Dimension keys: B batch, T frames, H/W VQ-GAN grid (16x16), h/w TECO grid (8x8),
E VQ-GAN embedding dim, D TECO embedding dim, A action embedding dim, V VQ-GAN
vocabulary, N tokens per frame in the temporal transformer ((h/z_ds) * (w/z_ds)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax import pose_memory
from teco_jax.models.maskgit import MaskGIT
from teco_jax.nn import layers
from teco_jax.nn.codebook import L2Codebook
from teco_jax.nn.recall import FrameRecall, Recall
from teco_jax.nn.transformer import Transformer, block_causal_mask, sinusoidal_positions
from teco_jax.nn.util import apply, shift_right


def _normal_param(rngs: nnx.Rngs, shape, axes) -> nnx.Param:
    return nnx.Param(0.02 * jax.random.normal(rngs.params(), shape), out_sharding=axes)


def avg_pool2(x_BHWC: jax.Array) -> jax.Array:
    b, h, w, c = x_BHWC.shape
    return x_BHWC.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class CondEncoder(nnx.Module):
    """E(e_t, e_{t-1}): concat on channels, ResNet 16x16 -> 8x8, dense to D.

    (e_prev_BHWE, e_BHWE) -> z_BhwD
    """

    def __init__(self, vq_dim: int, depths: tuple[int, int], blocks: int, out_dim: int, *, rngs, dtype=None):
        d0, d1 = depths
        self.conv_in = layers.conv(2 * vq_dim, d0, 3, rngs=rngs, dtype=dtype)
        self.block_in = layers.ResBlock(d0, d0, rngs=rngs, dtype=dtype)
        self.blocks = nnx.List([layers.ResBlock(d0 if i == 0 else d1, d1, rngs=rngs, dtype=dtype)
                                for i in range(blocks)])
        self.out = layers.dense(d1, out_dim, axes=("conv_out", "embed"), rngs=rngs, dtype=dtype)

    def __call__(self, e_prev_BHWE: jax.Array, e_BHWE: jax.Array) -> jax.Array:
        x = self.block_in(self.conv_in(jnp.concatenate([e_prev_BHWE, e_BHWE], axis=-1)))
        x = avg_pool2(x)
        for block in self.blocks:
            x = block(x)
        return self.out(x)


class MemoryReader(nnx.Module):
    """What the decoder takes from the pose memory's K earlier frames (model.memory).

    memory_BHW(K*(E+1+F)) -> features_BHWD. Each frame (its VQ-GAN embeddings turned into the
    query's heading, the mask of what it saw, its pose relative to the query broadcast over the
    map) passes the same conv and ResBlock, so what is learnt on one slot serves every other;
    the frames are then averaged with softmax weights scored from their relative poses (a frame
    not found gets none; nothing found reads zero).
    """

    def __init__(self, slots: int, frame_dim: int, out_dim: int, *, rngs, dtype=None):
        self.slots, self.frame_dim = slots, frame_dim
        per = frame_dim + 1 + pose_memory.POSE_FEATURES
        self.encode = nnx.Sequential(layers.conv(per, out_dim, 3, rngs=rngs, dtype=dtype),
                                     layers.ResBlock(out_dim, out_dim, rngs=rngs, dtype=dtype))
        self.score = nnx.Sequential(layers.dense(pose_memory.POSE_FEATURES, 32, (None, None), rngs=rngs, dtype=dtype),
                                    nnx.swish, layers.dense(32, 1, (None, None), rngs=rngs, dtype=dtype))

    def __call__(self, memory_BHWC: jax.Array) -> jax.Array:
        b, hh, ww, _ = memory_BHWC.shape
        x_BHWKC = memory_BHWC.reshape(b, hh, ww, self.slots, -1)
        feats_BKF = x_BHWKC[:, 0, 0, :, self.frame_dim + 1:]
        found_BK = feats_BKF[..., 3] > 0
        y = self.encode(jnp.moveaxis(x_BHWKC, 3, 1).reshape(b * self.slots, hh, ww, -1))
        y_BKHWD = y.reshape((b, self.slots) + y.shape[1:])
        logits_BK = jnp.where(found_BK, self.score(feats_BKF)[..., 0].astype(jnp.float32), -1e9)
        w_BK = jax.nn.softmax(logits_BK, axis=-1) * jnp.any(found_BK, axis=-1, keepdims=True)
        return jnp.einsum("bk,bkhwd->bhwd", w_BK.astype(y.dtype), y_BKHWD)


class CodeDecoder(nnx.Module):
    """D(z_t, h_t): concat, ResNet 8x8 -> 16x16, LayerNorm, dense to VQ-GAN code logits.

    (z_BhwD, h_BhwD[, copy_BHWC]) -> logits_BHWV. What TECO.recalled gives of earlier frames
    (model.recall: recall_dim channels of one frame's VQ-GAN embeddings; model.memory: the
    pose memory's slots, read by a MemoryReader) is added after the upsampling, where each
    position is one VQ-GAN code.
    """

    def __init__(self, in_dim: int, depths: tuple[int, int], blocks: int, vocab: int, *, rngs, dtype=None,
                 recall_dim: int = 0, memory_slots: int = 0, memory_dim: int = 0):
        d0, d1 = depths
        self.conv_in = layers.conv(in_dim, d0, 3, rngs=rngs, dtype=dtype)
        self.low = nnx.List([layers.ResBlock(d0 if i == 0 else d1, d1, rngs=rngs, dtype=dtype)
                             for i in range(blocks)])
        self.high = nnx.List([layers.ResBlock(d1 if i == 0 else d0, d0, rngs=rngs, dtype=dtype)
                              for i in range(blocks)])
        self.norm = layers.layer_norm(d0, rngs=rngs, dtype=dtype)
        self.out = layers.dense(d0, vocab, axes=("embed", "vocab"), rngs=rngs, dtype=dtype)
        self.recall_dim = recall_dim
        self.recall_in = (layers.dense(recall_dim, d1, (None, "conv_out"), rngs=rngs, dtype=dtype)
                          if recall_dim else None)
        self.memory_in = (MemoryReader(memory_slots, memory_dim, d1, rngs=rngs, dtype=dtype)
                          if memory_slots else None)

    @property
    def reads_earlier_frames(self) -> bool:
        return self.recall_in is not None or self.memory_in is not None

    def __call__(self, z_BhwD: jax.Array, h_BhwD: jax.Array, copy_BHWC: jax.Array | None = None) -> jax.Array:
        if (copy_BHWC is None) == self.reads_earlier_frames:
            raise ValueError("the decoder of a TECO with model.recall or model.memory needs the earlier frames "
                             "(copy_BHWC), and one without takes none")
        x = self.conv_in(jnp.concatenate([z_BhwD, h_BhwD], axis=-1))
        for block in self.low:
            x = block(x)
        x = jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)
        if self.recall_in is not None:
            x = x + self.recall_in(copy_BHWC[..., :self.recall_dim].astype(x.dtype))
        if self.memory_in is not None:
            x = x + self.memory_in(copy_BHWC[..., self.recall_dim:].astype(x.dtype))
        for block in self.high:
            x = block(x)
        return self.out(self.norm(x))


class TemporalTransformer(nnx.Module):
    """h_t = H(z_<t, a_<=t). (z_BThwD, a_BTA) -> h_BThwD; h_t never sees z_t.

    Position t of the sequence holds proj(z_{t-1} (+) a_t) (a learned start block at t = 0);
    a strided conv (kernel = stride = z_ds) turns each hxw map into N tokens, a block-causal
    transformer mixes them, a transposed conv brings them back to hxw.

    cfg.recall (not in the paper): position t also adds what followed its input the last
    times it occurred in the window (nn/recall.py: a built-in induction head); TECO.recalled
    finds that frame's VQ-GAN embeddings for the decoder.
    """

    def __init__(self, cfg, z_dim: int, action_dim: int, grid: tuple[int, int], *, rngs, dtype=None):
        t = cfg.transformer
        self.z_ds = cfg.z_ds
        self.grid = grid
        gh, gw = grid[0] // cfg.z_ds, grid[1] // cfg.z_ds
        if gh * cfg.z_ds != grid[0] or gw * cfg.z_ds != grid[1]:
            raise ValueError(f"z_ds={cfg.z_ds} does not divide the TECO grid {grid}")
        self.tokens_per_frame = gh * gw
        self.width = t.width
        self.proj = layers.conv(z_dim + action_dim, t.width, cfg.z_ds, cfg.z_ds, padding="VALID", use_bias=False,
                                axes=("conv_in", "embed"), rngs=rngs, dtype=dtype)
        self.start = _normal_param(rngs, (self.tokens_per_frame, t.width), (None, "embed"))
        self.transformer = Transformer(t.width, t.width, t.mlp_dim, t.num_heads, t.num_layers, rngs=rngs, dtype=dtype,
                                       remat=bool(cfg.get("remat", False)))
        self.recall = (Recall(self.tokens_per_frame, t.width, t.width, rngs=rngs, dtype=dtype)
                       if cfg.get("recall", False) else None)
        self.unproj = nnx.ConvTranspose(t.width, z_dim, (cfg.z_ds, cfg.z_ds), (cfg.z_ds, cfg.z_ds), padding="VALID",
                                        use_bias=False, dtype=dtype, rngs=rngs,
                                        kernel_metadata={"out_sharding": (None, None, "embed", "conv_out")})

    def tokens(self, z_prev_BThwD: jax.Array, a_BTA: jax.Array) -> jax.Array:
        """Input tokens for frames whose predecessors are z_prev: (B, T, N, width)."""
        b, t = z_prev_BThwD.shape[:2]
        a = jnp.broadcast_to(a_BTA[:, :, None, None, :], z_prev_BThwD.shape[:-1] + a_BTA.shape[-1:])
        x = jnp.concatenate([z_prev_BThwD, a.astype(z_prev_BThwD.dtype)], axis=-1)
        x = self.proj(x.reshape((b * t,) + x.shape[2:]))
        return x.reshape(b, t, self.tokens_per_frame, self.width)

    def untokens(self, y_BTNW: jax.Array) -> jax.Array:
        b, t = y_BTNW.shape[:2]
        gh, gw = self.grid[0] // self.z_ds, self.grid[1] // self.z_ds
        h = self.unproj(y_BTNW.reshape(b * t, gh, gw, self.width))
        return h.reshape((b, t) + h.shape[1:])

    def _start(self, b: int, dtype) -> jax.Array:
        return jnp.broadcast_to(self.start[...].astype(dtype), (b, 1, self.tokens_per_frame, self.width))

    def sequence(self, z_BThwD: jax.Array, a_BTA: jax.Array) -> jax.Array:
        """The token sequence for frames 0..T-1: (B, T, N, width)."""
        x = self.tokens(z_BThwD[:, :-1], a_BTA[:, 1:])
        x = jnp.concatenate([self._start(x.shape[0], x.dtype), x], axis=1)
        if self.recall is not None:
            x = x + self.recall(x)
        return x

    def _input_at(self, z_BThwD: jax.Array, a_BTA: jax.Array, t: jax.Array) -> jax.Array:
        """Frame t's tokens (the start block at t = 0): (B, 1, N, width)."""
        z_prev = jax.lax.dynamic_index_in_dim(z_BThwD, jnp.maximum(t - 1, 0), axis=1)
        x = self.tokens(z_prev, jax.lax.dynamic_index_in_dim(a_BTA, t, axis=1))
        return jnp.where(t == 0, self._start(x.shape[0], x.dtype), x)

    def sequence_at(self, z_BThwD: jax.Array, a_BTA: jax.Array, t: jax.Array) -> jax.Array:
        """`sequence(z, a)[:, t]` for a traced t, computed from frame t-1 and action t only (with
        recall, from the whole window up to t): (B, N, width)."""
        if self.recall is not None:  # reads every earlier position; frames after t are masked out
            return jax.lax.dynamic_index_in_dim(self.sequence(z_BThwD, a_BTA), t, axis=1, keepdims=False)
        return self._input_at(z_BThwD, a_BTA, t)[:, 0]

    def __call__(self, z_BThwD: jax.Array, a_BTA: jax.Array) -> jax.Array:
        x = self.sequence(z_BThwD, a_BTA)
        b, t, n, w = x.shape
        pos = sinusoidal_positions(t * n, w).astype(x.dtype)
        y = self.transformer(x.reshape(b, t * n, w), mask=block_causal_mask(t, n), pos_BLD=pos[None])
        return self.untokens(y.reshape(b, t, n, w))


class TECO(nnx.Module):
    """The whole model. `cfg` is config.model (see configs/teco_dmlab.py)."""

    def __init__(self, cfg, *, rngs: nnx.Rngs, dtype=None):
        self.cfg = cfg
        self.remat = bool(cfg.get("remat", False))  # recompute E, D and transformer blocks in the backward pass
        self.recall = bool(cfg.get("recall", False))  # h_t comes with a recalled earlier frame (recalled())
        vq_hw = tuple(cfg.vq_grid)
        self.frame_recall = (FrameRecall(vq_hw[0] * vq_hw[1] * cfg.vq_embed_dim, cfg.action_embed_dim, 64,
                                         rngs=rngs, dtype=dtype) if self.recall else None)
        # model.memory (pose_memory.py): on when memory.motion is set; self.motion is its
        # pose_memory.Motion, or None while it is "fit" (resolved by the TECO task on the training
        # data before training: an unfitted model can be built, e.g. for --dry_run, but not run)
        mem = cfg.get("memory", None)
        self.motion = self.retrieval = None
        if mem is not None and mem.motion:
            if mem.motion != "fit":
                self.motion = pose_memory.Motion.parse(mem.motion, cfg.num_actions)
            self.retrieval = pose_memory.Retrieval(int(mem.neighbours), float(mem.turn_cost), float(mem.radius),
                                                   int(mem.min_age), bool(mem.latest))
            self.detect_blocked = bool(mem.detect_blocked)
            self.fov = math.radians(float(mem.fov_degrees))
        self.grid = (vq_hw[0] // 2, vq_hw[1] // 2)
        d = cfg.embedding_dim
        self.num_actions = cfg.num_actions
        self.null_action = cfg.num_actions  # the extra embedding index: "no action given"
        self.action_embed = nnx.Embed(cfg.num_actions + 1, cfg.action_embed_dim, rngs=rngs, dtype=dtype,
                                      embedding_metadata={"out_sharding": (None, None)})
        self.start_post = _normal_param(rngs, vq_hw + (cfg.vq_embed_dim,), (None, None, None))
        self.encoder = CondEncoder(cfg.vq_embed_dim, tuple(cfg.encoder.depths), cfg.encoder.blocks, d,
                                   rngs=rngs, dtype=dtype)
        self.codebook = L2Codebook(d, cfg.codebook_size, cfg.code_dim, beta=0.25, rngs=rngs, dtype=dtype)
        self.temporal = TemporalTransformer(cfg, d, cfg.action_embed_dim, self.grid, rngs=rngs, dtype=dtype)
        m = cfg.maskgit
        self.prior = MaskGIT(cfg.codebook_size, self.grid, d, m.token_dim, m.width, m.mlp_dim, m.num_heads,
                             m.num_layers, rngs=rngs, dtype=dtype, remat=self.remat)
        self.decoder = CodeDecoder(2 * d, tuple(cfg.decoder.depths), cfg.decoder.blocks, cfg.vq_vocab,
                                   rngs=rngs, dtype=dtype, recall_dim=cfg.vq_embed_dim * int(self.recall),
                                   memory_slots=0 if self.retrieval is None else self.retrieval.slots,
                                   memory_dim=cfg.vq_embed_dim)

    # --------------------------------------------------------------- pieces
    def embed_actions(self, actions_BT: jax.Array) -> jax.Array:
        return self.action_embed(actions_BT)

    def encode(self, e_BTHWE: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Posterior z for every frame: continuous for t < n_cond, quantized after.

        Returns (z_BThwD, vq) with vq = the codebook's dict for frames >= n_cond
        (codes_BThw, loss, perplexity, usage) and vq["z_cont"] the unquantized outputs.
        """
        b, t = e_BTHWE.shape[:2]
        start = jnp.broadcast_to(self.start_post[...].astype(e_BTHWE.dtype), (b, 1) + e_BTHWE.shape[2:])
        e_prev = jnp.concatenate([start, e_BTHWE[:, :-1]], axis=1)
        flat = lambda x: x.reshape((b * t,) + x.shape[2:])  # noqa: E731
        z = apply(self.encoder, flat(e_prev), flat(e_BTHWE), remat=self.remat)
        z = z.reshape((b, t) + z.shape[1:])
        n_cond = self.cfg.n_cond
        vq = self.codebook(z[:, n_cond:])
        z_all = jnp.concatenate([z[:, :n_cond], vq["z_q"].astype(z.dtype)], axis=1)
        vq["z_cont"] = z
        return z_all, vq

    def recalled(self, actions_BT: jax.Array, e_BTHWE: jax.Array, at: jax.Array | None = None
                 ) -> jax.Array | None:
        """What the decoder reads of earlier frames (B, T, H, W, C), or None without model.recall
        and model.memory:
        - model.recall: the VQ-GAN embeddings of the frames that followed the same view (frame
          t-1) and action (a_t), weighted by nn/recall.FrameRecall (E channels);
        - model.memory: the K earlier frames nearest frame t's dead-reckoned pose
          (pose_memory.py), each as its embeddings turned into frame t's heading, the mask of
          what it saw and its pose relative to frame t's (K * (E + 1 + 4) channels; zero where
          none was found).
        actions (int) and e are what the transformer reads: frame t's result depends on frames
        < t and actions <= t only. at: only that (traced) frame's, (B, H, W, C)."""
        parts = []
        if self.recall:
            w_BTP = self.frame_recall.weights(e_BTHWE, self.embed_actions(actions_BT))[..., 1:]
            if at is not None:
                w_BTP = jax.lax.dynamic_slice_in_dim(w_BTP, at, 1, axis=1)
            parts.append(jnp.einsum("btp,bphwe->bthwe", w_BTP.astype(e_BTHWE.dtype),
                                    shift_right(e_BTHWE)))  # position p reads frame p-1
        if self.retrieval is not None:
            parts.append(self.remembered(actions_BT, e_BTHWE, at))
        if not parts:
            return None
        copy = jnp.concatenate(parts, axis=-1)
        return copy if at is None else copy[:, 0]

    def remembered(self, actions_BT: jax.Array, e_BTHWE: jax.Array, at: jax.Array | None = None) -> jax.Array:
        """model.memory's part of `recalled`: (B, R, H, W, K * (E + 1 + 4)), R = T or 1 (at)."""
        if self.motion is None:
            raise ValueError("config.model.memory.motion='fit' is fitted by the TECO task on the training data "
                             "before training; this model was built from an unfitted config")
        moved = (pose_memory.moved(e_BTHWE) if self.detect_blocked
                 else jnp.ones(actions_BT.shape, bool))
        pose, query = pose_memory.dead_reckon(actions_BT, moved, self.motion)
        idx_BRK, feats_BRKF = pose_memory.nearest(pose, query, self.retrieval, at)
        e_BRKHWE = jax.vmap(lambda e, i: e[i])(e_BTHWE, idx_BRK)
        b, r, k, hh, ww, ee = e_BRKHWE.shape
        turned, seen = pose_memory.rotate_view(e_BRKHWE.reshape(b * r * k, hh, ww, ee),
                                               feats_BRKF[..., 2].reshape(-1), self.fov)
        found = feats_BRKF[..., 3].reshape(-1, 1, 1, 1).astype(e_BTHWE.dtype)
        f = jnp.broadcast_to(feats_BRKF.reshape(-1, 1, 1, feats_BRKF.shape[-1]).astype(e_BTHWE.dtype),
                             (b * r * k, hh, ww, feats_BRKF.shape[-1]))
        x = jnp.concatenate([turned * found, seen.astype(e_BTHWE.dtype) * found, f], axis=-1)
        x = x.reshape(b, r, k, hh, ww, -1)  # (B, R, K, H, W, E + 1 + 4)
        return jnp.moveaxis(x, 2, -2).reshape(b, r, hh, ww, -1)

    def h_only_codes(self, h_BThwD: jax.Array, copy_BTHWE: jax.Array | None = None) -> jax.Array:
        """argmax D(0, h_t): the VQ-GAN codes h_t alone predicts (sampler show = "mean")."""
        return jnp.argmax(self.decode_logits(jnp.zeros_like(h_BThwD), h_BThwD, copy_BTHWE), axis=-1)

    def decode_logits(self, z_BThwD: jax.Array, h_BThwD: jax.Array, copy_BTHWE: jax.Array | None = None
                      ) -> jax.Array:
        b, t = z_BThwD.shape[:2]
        flat = lambda x: None if x is None else x.reshape((b * t,) + x.shape[2:])  # noqa: E731
        logits = apply(self.decoder, flat(z_BThwD), flat(h_BThwD), flat(copy_BTHWE), remat=self.remat)
        return logits.reshape((b, t) + logits.shape[1:])
