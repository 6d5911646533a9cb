"""A factorized space-time U-Net: the denoiser of the latent video diffusion baseline.

Built from the main ideas of four latent video diffusion systems:

- Video LDM (Blattmann et al. 2023): an image U-Net (ResNet blocks and spatial
  self-attention applied to every frame on its own) interleaved with temporal layers;
  each temporal layer's output is mixed with its input by a learnable factor
  alpha in [0, 1]: y = alpha * x + (1 - alpha) * temporal(x). With every alpha = 1 the
  network is exactly the image model applied frame by frame.
- AnimateDiff (Guo et al. 2024): the temporal self-attention "motion module": at every
  spatial location, a transformer over the frame axis with sinusoidal frame positions,
  whose output projection is zero-initialized (it starts as the identity).
- Tune-A-Video (Wu et al. 2023): spatial convolutions are "inflated" 1x3x3 3-D
  convolutions (a 2-D kernel applied to every frame: frames are folded into the batch);
  optionally the spatial self-attention becomes sparse-causal: the queries of frame t
  attend to the keys and values of frames 0 and t - 1.
- The temporal convolution is a residual block of 3x1x1 convolutions over the frame axis
  (the spatial part is left to the inflated convolutions: a pseudo-3-D factorization).

Conditioning: the timestep (sinusoidal features + MLP) plus a per-frame action embedding
(in place of text; index `num_actions` is the "null action") give one embedding per
frame, which scales and shifts the features inside every ResNet block. Context frames
come in by mask-concatenation (Video LDM's prediction model): the input is
(x_t, m * z, m) on channels, m = 1 on the given frames.

Dimension keys: B batch, T frames, N = B * T frames folded into the batch, h/w latent
grid (16x16, halved at every level), C latent channels, D features, E embedding width.
Spatial layers run on (N, h, w, D); temporal layers unfold T from N.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.nn.attention import MultiHeadAttention, attend
from teco_jax.nn.layers import Downsample, Upsample, conv, dense, group_norm, layer_norm
from teco_jax.nn.transformer import TransformerBlock, sinusoidal_positions

zeros_init = nnx.initializers.zeros_init()


def logit(p: float) -> float:
    """The inverse of the sigmoid, clipped so that p = 0 and p = 1 map to finite logits
    whose float32 sigmoid is exactly 0 and 1."""
    if p >= 1.0:
        return 100.0
    if p <= 0.0:
        return -200.0
    return math.log(p / (1.0 - p))


def unfold(x_NhwD: jax.Array, frames: int) -> jax.Array:
    """(B*T, h, w, D) -> (B, T, h, w, D)."""
    return x_NhwD.reshape((x_NhwD.shape[0] // frames, frames) + x_NhwD.shape[1:])


def fold(x_BThwD: jax.Array) -> jax.Array:
    """(B, T, h, w, D) -> (B*T, h, w, D)."""
    return x_BThwD.reshape((-1,) + x_BThwD.shape[2:])


# ----------------------------------------------------------------- building blocks

class AlphaMix(nnx.Module):
    """y = alpha * spatial + (1 - alpha) * temporal, alpha = sigmoid(logit) learnable (Video LDM).

    The sigmoid keeps alpha in [0, 1] with a gradient everywhere; `set(1.0)` makes alpha exactly
    1 (and 1 - alpha exactly 0) in float32, which reproduces the spatial path bit for bit."""

    def __init__(self, init: float):
        self.logit = nnx.Param(jnp.asarray(logit(init), jnp.float32), out_sharding=())

    @property
    def alpha(self) -> jax.Array:
        return jax.nn.sigmoid(self.logit[...])

    def set(self, alpha: float) -> None:
        self.logit[...] = jnp.asarray(logit(alpha), jnp.float32)

    def __call__(self, spatial: jax.Array, temporal: jax.Array) -> jax.Array:
        a = self.alpha.astype(spatial.dtype)
        return a * spatial + (1 - a) * temporal


class EmbResBlock(nnx.Module):
    """Pre-activation ResNet block conditioned on a per-frame embedding (scale and shift after
    the second GroupNorm, as in ADM). Its 3x3 convolutions are the inflated 1x3x3 ones (frames
    are folded into the batch). The second convolution is zero-initialized.

    (x_NhwD, emb_NE) -> y_NhwF
    """

    def __init__(self, in_features: int, out_features: int, emb_dim: int, *, rngs: nnx.Rngs, dtype=None):
        self.norm1 = group_norm(in_features, rngs=rngs, dtype=dtype)
        self.conv1 = conv(in_features, out_features, 3, rngs=rngs, dtype=dtype)
        self.emb_proj = dense(emb_dim, 2 * out_features, (None, "conv_out"), rngs=rngs, dtype=dtype)
        self.norm2 = group_norm(out_features, rngs=rngs, dtype=dtype)
        self.conv2 = conv(out_features, out_features, 3, rngs=rngs, dtype=dtype, kernel_init=zeros_init)
        self.skip = (conv(in_features, out_features, 1, rngs=rngs, dtype=dtype)
                     if in_features != out_features else None)

    def __call__(self, x_NhwD: jax.Array, emb_NE: jax.Array) -> jax.Array:
        h = self.conv1(nnx.swish(self.norm1(x_NhwD)))
        scale, shift = jnp.split(self.emb_proj(nnx.swish(emb_NE))[:, None, None, :], 2, axis=-1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(nnx.swish(h))
        return h + (self.skip(x_NhwD) if self.skip is not None else x_NhwD)


def sparse_causal_attention(attn: MultiHeadAttention, x_BTLD: jax.Array) -> jax.Array:
    """Tune-A-Video's sparse-causal attention with `attn`'s projections: the queries of frame t
    attend to the keys and values of frames 0 and t - 1 (frame 0 to those of frame 0 twice,
    which equals attending to them once). (B, T, L, D) -> (B, T, L, D)."""
    b, t, n, _ = x_BTLD.shape
    heads = lambda y: y.reshape(b, t, n, attn.num_heads, attn.head_dim)
    q, k, v = heads(attn.q_proj(x_BTLD)), heads(attn.k_proj(x_BTLD)), heads(attn.v_proj(x_BTLD))
    prev = jnp.maximum(jnp.arange(t) - 1, 0)

    def first_and_prev(y_BTLHK):  # (B, T, 2L, H, K): frame 0's tokens then frame t-1's
        first = jnp.broadcast_to(y_BTLHK[:, :1], y_BTLHK.shape)
        return jnp.concatenate([first, y_BTLHK[:, prev]], axis=2)

    k2, v2 = first_and_prev(k), first_and_prev(v)
    flat = lambda y: y.reshape((b * t,) + y.shape[2:])
    o = attend(flat(q), flat(k2), flat(v2)).reshape(b, t, n, attn.num_heads * attn.head_dim)
    return attn.out_proj(o)


class SpatialAttention(nnx.Module):
    """x + Attn(GroupNorm(x)) over the h*w tokens of every frame; with `sparse_causal`, Tune-A-Video's
    sparse-causal attention instead (frame t's queries, frames 0 and t-1's keys and values).

    (x_NhwD, T) -> y_NhwD
    """

    def __init__(self, features: int, num_heads: int, *, sparse_causal: bool = False, rngs: nnx.Rngs, dtype=None):
        self.sparse_causal = sparse_causal
        self.norm = group_norm(features, rngs=rngs, dtype=dtype)
        self.attn = MultiHeadAttention(features, num_heads, rngs=rngs, dtype=dtype)

    def __call__(self, x_NhwD: jax.Array, frames: int) -> jax.Array:
        n, h, w, d = x_NhwD.shape
        tokens = self.norm(x_NhwD).reshape(n, h * w, d)
        if self.sparse_causal:
            y = sparse_causal_attention(self.attn, tokens.reshape(n // frames, frames, h * w, d))
        else:
            y = self.attn(tokens)
        return x_NhwD + y.reshape(n, h, w, d)


class TemporalConv(nnx.Module):
    """Video LDM's temporal convolution: a residual block of two 3x1x1 convolutions over the frame
    axis (GroupNorm, swish, conv; zero-initialized second conv, so it starts as the identity).

    (x_NhwD, T) -> y_NhwD
    """

    def __init__(self, features: int, *, rngs: nnx.Rngs, dtype=None, kernel: int = 3):
        self.norm1 = group_norm(features, rngs=rngs, dtype=dtype)
        self.conv1 = conv(features, features, (kernel, 1, 1), rngs=rngs, dtype=dtype)
        self.norm2 = group_norm(features, rngs=rngs, dtype=dtype)
        self.conv2 = conv(features, features, (kernel, 1, 1), rngs=rngs, dtype=dtype, kernel_init=zeros_init)

    def __call__(self, x_NhwD: jax.Array, frames: int) -> jax.Array:
        x = unfold(x_NhwD, frames)
        h = self.conv1(nnx.swish(self.norm1(x)))
        h = self.conv2(nnx.swish(self.norm2(h)))
        return fold(x + h)


class MotionModule(nnx.Module):
    """AnimateDiff's motion module: at every spatial location, a pre-LayerNorm transformer over the
    T frames (sinusoidal frame positions added after the input projection), with a zero-initialized
    output projection and a residual connection.

    (x_NhwD, T) -> y_NhwD
    """

    def __init__(self, features: int, num_heads: int, num_layers: int = 1, mlp_ratio: int = 4, *,
                 rngs: nnx.Rngs, dtype=None):
        self.norm = layer_norm(features, rngs=rngs, dtype=dtype)
        self.proj_in = dense(features, features, ("conv_out", "embed"), rngs=rngs, dtype=dtype)
        self.blocks = nnx.List([TransformerBlock(features, mlp_ratio * features, num_heads, rngs=rngs, dtype=dtype)
                                for _ in range(num_layers)])
        self.proj_out = dense(features, features, ("embed", "conv_out"), rngs=rngs, dtype=dtype,
                              kernel_init=zeros_init)

    def __call__(self, x_NhwD: jax.Array, frames: int) -> jax.Array:
        b_t, h, w, d = x_NhwD.shape
        seq = unfold(x_NhwD, frames).transpose(0, 2, 3, 1, 4).reshape(-1, frames, d)  # (B*h*w, T, D)
        y = self.proj_in(self.norm(seq))
        y = y + sinusoidal_positions(frames, d).astype(y.dtype)
        for block in self.blocks:
            y = block(y)
        y = self.proj_out(y)
        y = y.reshape(b_t // frames, h, w, frames, d).transpose(0, 3, 1, 2, 4).reshape(b_t, h, w, d)
        return x_NhwD + y


class SpaceTimeBlock(nnx.Module):
    """ResNet block -> alpha-mixed temporal conv -> [spatial attention] -> [alpha-mixed motion module].

    `temporal=False` skips the temporal layers: the image model's block."""

    def __init__(self, in_features: int, out_features: int, emb_dim: int, *, attention: bool, motion: bool,
                 cfg: Any, rngs: nnx.Rngs, dtype=None):
        self.res = EmbResBlock(in_features, out_features, emb_dim, rngs=rngs, dtype=dtype)
        self.tconv = TemporalConv(out_features, rngs=rngs, dtype=dtype) if cfg.temporal_conv else None
        self.mix_tconv = AlphaMix(cfg.alpha_init) if cfg.temporal_conv else None
        self.attn = (SpatialAttention(out_features, cfg.num_heads, sparse_causal=cfg.sparse_causal, rngs=rngs,
                                      dtype=dtype) if attention else None)
        self.motion = (MotionModule(out_features, cfg.motion_heads, cfg.motion_layers, rngs=rngs, dtype=dtype)
                       if motion else None)
        self.mix_motion = AlphaMix(cfg.alpha_init) if motion else None

    def __call__(self, x_NhwD: jax.Array, emb_NE: jax.Array, frames: int, temporal: bool = True) -> jax.Array:
        x = self.res(x_NhwD, emb_NE)
        if temporal and self.tconv is not None:
            x = self.mix_tconv(x, self.tconv(x, frames))
        if self.attn is not None:
            x = self.attn(x, frames)
        if temporal and self.motion is not None:
            x = self.mix_motion(x, self.motion(x, frames))
        return x


# ----------------------------------------------------------------- the network

class VideoDenoiser(nnx.Module):
    """v-prediction network: (x_t, t, context z, mask m, actions) -> v, all per frame.

    x_BThwC noisy latents, t_B int timesteps, ctx_BThwC clean latents (read only where m = 1),
    mask_BT in {0, 1}, actions_BT int in [0, num_actions] (num_actions = null). Returns v_BThwC.

    `cfg` is config.model (see configs/diffusion_dmlab.py): latent_dim, channels, channel_mult,
    num_res_blocks, attn_levels, motion_levels, num_heads, motion_heads, motion_layers,
    temporal_conv, alpha_init, sparse_causal, num_actions.
    """

    def __init__(self, cfg: Any, *, rngs: nnx.Rngs, dtype=None):
        self.cfg = cfg
        c, ch = int(cfg.latent_dim), int(cfg.channels)
        widths = [ch * m for m in cfg.channel_mult]
        emb = 4 * ch
        self.emb_dim, self.num_actions = emb, int(cfg.num_actions)
        self.null_action = self.num_actions
        self.time_fc1 = dense(ch, emb, (None, "embed"), rngs=rngs, dtype=dtype)
        self.time_fc2 = dense(emb, emb, ("embed", None), rngs=rngs, dtype=dtype)
        self.action_embed = nnx.Embed(self.num_actions + 1, emb, rngs=rngs, dtype=dtype,
                                      embedding_metadata={"out_sharding": (None, None)})
        self.conv_in = conv(2 * c + 1, widths[0], 3, rngs=rngs, dtype=dtype)

        def block(i, o, level):
            return SpaceTimeBlock(i, o, emb, attention=level in tuple(cfg.attn_levels),
                                  motion=level in tuple(cfg.motion_levels), cfg=cfg, rngs=rngs, dtype=dtype)

        down, skips, d = [], [widths[0]], widths[0]
        for level, w in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                down.append(block(d, w, level))
                d = w
                skips.append(d)
            if level < len(widths) - 1:
                down.append(Downsample(d, rngs=rngs, dtype=dtype))
                skips.append(d)
        self.down = nnx.List(down)
        bottom = len(widths) - 1
        self.mid = nnx.List([block(d, d, bottom), block(d, d, bottom)])
        up = []
        for level in reversed(range(len(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                up.append(block(d + skips.pop(), widths[level], level))
                d = widths[level]
            if level > 0:
                up.append(Upsample(d, rngs=rngs, dtype=dtype))
        self.up = nnx.List(up)
        self.norm_out = group_norm(d, rngs=rngs, dtype=dtype)
        self.conv_out = conv(d, c, 3, rngs=rngs, dtype=dtype, kernel_init=zeros_init)

    # ------------------------------------------------------------ pieces
    def embed(self, t_B: jax.Array, actions_BT: jax.Array) -> jax.Array:
        """Per-frame conditioning embedding (B, T, E): timestep MLP + action embedding."""
        feats = sinusoidal_positions(t_B, self.time_fc1.in_features)
        h = self.time_fc2(nnx.swish(self.time_fc1(feats)))
        return h[:, None, :] + self.action_embed(actions_BT).astype(h.dtype)

    def alpha_mixers(self) -> list[AlphaMix]:
        return [m for _, m in nnx.iter_graph(self) if isinstance(m, AlphaMix)]

    def set_alphas(self, alpha: float) -> None:
        """Set every temporal mixing factor (alpha = 1: the image model, frame by frame)."""
        for m in self.alpha_mixers():
            m.set(alpha)

    # ------------------------------------------------------------ forward
    def __call__(self, x_BThwC: jax.Array, t_B: jax.Array, ctx_BThwC: jax.Array, mask_BT: jax.Array,
                 actions_BT: jax.Array, temporal: bool = True) -> jax.Array:
        b, frames = x_BThwC.shape[:2]
        m = mask_BT.astype(x_BThwC.dtype)[:, :, None, None, None]
        m_map = jnp.broadcast_to(m, x_BThwC.shape[:-1] + (1,))
        inp = jnp.concatenate([x_BThwC, m * ctx_BThwC.astype(x_BThwC.dtype), m_map], axis=-1)
        emb = self.embed(t_B, actions_BT).reshape(b * frames, -1)
        h = self.conv_in(fold(inp))
        hs = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, emb, frames, temporal)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb, frames, temporal)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = layer(jnp.concatenate([h, hs.pop()], axis=-1), emb, frames, temporal)
        out = self.conv_out(nnx.swish(self.norm_out(h)))
        return unfold(out, frames)
