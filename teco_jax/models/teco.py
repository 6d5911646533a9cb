"""TECO: Temporally Consistent Transformer (spec section 3, docs/spec.md), on VQ-GAN codes.

    VQ-GAN embeddings e_t (16x16) --E(e_t, e_{t-1})--> z_t (8x8; quantized for t >= n_cond)
    tokens: [start, proj(z_0 (+) a_1), ..., proj(z_{T-2} (+) a_{T-1})] --block-causal transformer--> h_t
    p(z_t | h_t): spatial MaskGIT      D(z_t, h_t) -> logits over the VQ-GAN codes of frame t

That is the paper's model, and all of it with config.model.memory off (the paper presets).
With it on (models/memory.py), D also reads a map of earlier frames: D(z_t, h_t, memory_t).

Dimension keys: B batch, T frames, H/W VQ-GAN grid (16x16), h/w TECO grid (8x8),
E VQ-GAN embedding dim, D TECO embedding dim, A action embedding dim, V VQ-GAN
vocabulary, N tokens per frame in the temporal transformer ((h/z_ds) * (w/z_ds)), C channels
of the memory map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.models.maskgit import MaskGIT
from teco_jax.models.memory import MemoryReader, PoseMemory
from teco_jax.models.options import Options
from teco_jax.nn import layers
from teco_jax.nn.codebook import L2Codebook
from teco_jax.nn.transformer import Transformer, block_causal_mask, sinusoidal_positions
from teco_jax.nn.util import apply


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


class CodeDecoder(nnx.Module):
    """D(z_t, h_t): concat, ResNet 8x8 -> 16x16, LayerNorm, dense to VQ-GAN code logits.

    (z_BhwD, h_BhwD[, memory_BHWC]) -> logits_BHWV. With model.memory, what the memory reader
    makes of the earlier frames (models/memory.py) is added after the upsampling, where each
    position is one VQ-GAN code.
    """

    def __init__(self, in_dim: int, depths: tuple[int, int], blocks: int, vocab: int, *, rngs, dtype=None,
                 memory_slots: int = 0, memory_dim: int = 0):
        d0, d1 = depths
        self.conv_in = layers.conv(in_dim, d0, 3, rngs=rngs, dtype=dtype)
        self.low = nnx.List([layers.ResBlock(d0 if i == 0 else d1, d1, rngs=rngs, dtype=dtype)
                             for i in range(blocks)])
        self.high = nnx.List([layers.ResBlock(d1 if i == 0 else d0, d0, rngs=rngs, dtype=dtype)
                              for i in range(blocks)])
        self.norm = layers.layer_norm(d0, rngs=rngs, dtype=dtype)
        self.out = layers.dense(d0, vocab, axes=("embed", "vocab"), rngs=rngs, dtype=dtype)
        self.memory_in = (MemoryReader(memory_slots, memory_dim, d1, rngs=rngs, dtype=dtype)
                          if memory_slots else None)

    def __call__(self, z_BhwD: jax.Array, h_BhwD: jax.Array, memory_BHWC: jax.Array | None = None) -> jax.Array:
        if (memory_BHWC is None) != (self.memory_in is None):
            raise ValueError("the decoder of a TECO with model.memory needs the memory's map of earlier frames "
                             "(memory_BHWC), and one without takes none")
        x = self.conv_in(jnp.concatenate([z_BhwD, h_BhwD], axis=-1))
        for block in self.low:
            x = block(x)
        x = jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)
        if self.memory_in is not None:
            x = x + self.memory_in(memory_BHWC.astype(x.dtype))
        for block in self.high:
            x = block(x)
        return self.out(self.norm(x))


class TemporalTransformer(nnx.Module):
    """h_t = H(z_<t, a_<=t). (z_BThwD, a_BTA) -> h_BThwD; h_t never sees z_t.

    Position t of the sequence holds proj(z_{t-1} (+) a_t) (a learned start block at t = 0);
    a strided conv (kernel = stride = z_ds) turns each hxw map into N tokens, a block-causal
    transformer mixes them, a transposed conv brings them back to hxw.
    """

    def __init__(self, cfg, z_dim: int, action_dim: int, grid: tuple[int, int], *, rngs, dtype=None,
                 remat: bool = False):
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
                                       remat=remat)
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
        return jnp.concatenate([self._start(x.shape[0], x.dtype), x], axis=1)

    def sequence_at(self, z_BThwD: jax.Array, a_BTA: jax.Array, t: jax.Array) -> jax.Array:
        """`sequence(z, a)[:, t]` for a traced t, computed from frame t-1 and action t only (the
        start block at t = 0): (B, N, width)."""
        z_prev = jax.lax.dynamic_index_in_dim(z_BThwD, jnp.maximum(t - 1, 0), axis=1)
        x = self.tokens(z_prev, jax.lax.dynamic_index_in_dim(a_BTA, t, axis=1))
        return jnp.where(t == 0, self._start(x.shape[0], x.dtype), x)[:, 0]

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
        options = Options.of(cfg)  # the settings that are not in the paper (off there)
        self.remat = options.remat
        vq_hw = tuple(cfg.vq_grid)
        # model.memory (models/memory.py): the decoder also reads earlier frames
        self.memory = PoseMemory.of(options.memory, cfg.num_actions) if options.memory.on else None
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
        self.temporal = TemporalTransformer(cfg, d, cfg.action_embed_dim, self.grid, rngs=rngs, dtype=dtype,
                                            remat=self.remat)
        m = cfg.maskgit
        self.prior = MaskGIT(cfg.codebook_size, self.grid, d, m.token_dim, m.width, m.mlp_dim, m.num_heads,
                             m.num_layers, rngs=rngs, dtype=dtype, remat=self.remat)
        self.decoder = CodeDecoder(2 * d, tuple(cfg.decoder.depths), cfg.decoder.blocks, cfg.vq_vocab,
                                   rngs=rngs, dtype=dtype, memory_slots=0 if self.memory is None else self.memory.slots,
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

    def earlier_frames(self, actions_BT: jax.Array, e_BTHWE: jax.Array, at: jax.Array | None = None
                       ) -> jax.Array | None:
        """What the decoder reads of earlier frames with model.memory (None without): the map
        (B, T, H, W, C) of models/memory.PoseMemory.gather, or (B, H, W, C) for the traced frame
        `at` alone. actions (int) and e are what the transformer reads: frame t's map depends on
        frames < t and actions <= t only."""
        if self.memory is None:
            return None
        memory = self.memory.gather(actions_BT, e_BTHWE, at)
        return memory if at is None else memory[:, 0]

    def h_only_codes(self, h_BThwD: jax.Array, memory_BTHWC: jax.Array | None = None) -> jax.Array:
        """argmax D(0, h_t): the VQ-GAN codes h_t alone predicts (sampler show = "mean")."""
        return jnp.argmax(self.decode_logits(jnp.zeros_like(h_BThwD), h_BThwD, memory_BTHWC), axis=-1)

    def decode_logits(self, z_BThwD: jax.Array, h_BThwD: jax.Array, memory_BTHWC: jax.Array | None = None
                      ) -> jax.Array:
        b, t = z_BThwD.shape[:2]
        flat = lambda x: None if x is None else x.reshape((b * t,) + x.shape[2:])  # noqa: E731
        logits = apply(self.decoder, flat(z_BThwD), flat(h_BThwD), flat(memory_BTHWC), remat=self.remat)
        return logits.reshape((b, t) + logits.shape[1:])
