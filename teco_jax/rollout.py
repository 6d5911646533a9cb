"""Long rollouts with TECO: a KV-cached temporal transformer, MaskGIT sampling, a sliding window.

    context codes --encode--> z_0..z_{C-1} --prefill--> KV cache (C frames)
    for t = C .. L-1:   token proj(z_{t-1} (+) a_t) --one cached step--> h_t
                        z_t ~ MaskGIT(h_t);  codes_t = argmax D(z_t, h_t);  append z_t

(with decode_temperature > 0, codes_t is drawn from D instead of its argmax)

That is the paper's sampler (Sampler.show = "sample", feedback = "prior"). Two options
change what is shown and what is fed back: show = "mean" outputs argmax D(0, h_t), the
frame h_t alone predicts (the prior is not run); feedback = "shown" or "mean" appends the
posterior E(e_{t-1}, e_t) of the shown frame or of the h_t-alone frame instead of the
prior's z_t, so the transformer reads what it read in training: encoded frames. With
show = "sample", feedback = "mean", the frames shown are samples of the full model while
the history stays on the h_t-alone track. feedback = "none" reads no generated frame back
(their z are zeros): every h_t is predicted from the context and the actions alone (an
open-loop rollout), so the rollout's errors cannot compound.

The window holds the model's trained length (`window` frames). When it is full, the
oldest `sampler.slide` frames are dropped and the cache is rebuilt from the remaining
`window - slide` frames, with training's layout: positions restart at 0, and the new
first frame's z is re-encoded continuous (E(start, e_t), as for the first n_cond frames
of every training clip) from its VQ-GAN codes, which the state keeps. slide = 1 (the
default) rebuilds before every frame past the window, as the authors' sampler does;
slide = k rebuilds once per k frames, so long rollouts run at nearly the cached speed
while every frame still sees at least `window - k` predecessors. Memory stays constant
for rollouts of any length. Every step is one jit-compiled function of fixed shapes over
a small typed state; the loop is `lax.scan`.

Dimension keys: B batch, C context frames, L total frames, W window frames, H/W
VQ-GAN grid, h/w TECO grid, D TECO embedding dim, N temporal tokens per frame.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.models.teco import TECO
from teco_jax.nn.transformer import block_causal_mask, sinusoidal_positions


SHOW, FEEDBACK = ("sample", "mean"), ("prior", "shown", "mean", "none")


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How z_t is drawn from the MaskGIT prior (hashable: a static jit argument)."""

    schedule: str = "draft_revise"  # or "confidence" (MaskGIT's schedule)
    draft_steps: int = 8
    revise_steps: int = 8
    revise_rounds: int = 2
    confidence_steps: int = 8
    temperature: float = 1.0
    choice_temperature: float = 4.5  # MaskGIT's noise on the confidences (the confidence schedule only)
    slide: int = 1  # frames dropped at once when the window is full (see the module docstring)
    # Not in the paper, whose presets keep show="sample", feedback="prior" (docs/cpu_world.md,
    # "Sampling"). show: the frame a step outputs, argmax D(z_t, h_t) with z_t from the prior
    # ("sample") or argmax D(0, h_t), h_t alone as z_dropout trains the decoder ("mean").
    # feedback: what the next step reads as z_t, the prior's sample ("prior"), or the posterior
    # E(e_{t-1}, e_t) of the shown frame ("shown") or of the h_t-alone frame ("mean"), or
    # nothing ("none": zeros, an open-loop rollout); the frames whose
    # posteriors are read are the ones the state keeps.
    show: str = "sample"  # or "mean"
    feedback: str = "prior"  # or "shown", "mean", "none"
    # decode_temperature (not in the paper): 0 shows argmax D, each code the decoder's most
    # probable; > 0 draws each code from D's distribution at that temperature, so a place the
    # model is unsure of gets a plausible view instead of the per-code mode, a flat average
    # (docs/cpu_world.md, "Sampling the decoder's codes").
    decode_temperature: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "Sampler":
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls) if f.name in cfg})

    def override(self, **changes) -> "Sampler":
        """A copy with the given fields replaced; None keeps a field (optional command-line flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def sample(self, prior, h_BnD: jax.Array, key: jax.Array) -> jax.Array:
        if self.schedule == "draft_revise":
            return prior.sample_draft_revise(h_BnD, key, self.draft_steps, self.revise_steps, self.revise_rounds,
                                             self.temperature)
        if self.schedule == "confidence":
            return prior.sample_confidence(h_BnD, key, self.confidence_steps, self.temperature,
                                           self.choice_temperature)
        raise ValueError(f"unknown sampling schedule {self.schedule!r} (draft_revise or confidence)")


def add_sampler_flags(parser) -> None:
    """Command-line overrides of the config's model.sampling (sample.py, the benchmark)."""
    parser.add_argument("--schedule", choices=("draft_revise", "confidence"), default=None,
                        help="TECO's MaskGIT schedule (default: the config's model.sampling.schedule)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="TECO's MaskGIT sampling temperature (default: the config's)")
    parser.add_argument("--show", choices=SHOW, default=None,
                        help="the frame each step outputs: decoded from the prior's sample (the paper) or from "
                             "h_t alone (default: the config's model.sampling.show)")
    parser.add_argument("--feedback", choices=FEEDBACK, default=None,
                        help="z the next step reads: the prior's sample (the paper), the posterior of the shown "
                             "frame or of the h_t-alone frame, or none (zeros: an open-loop "
                             "rollout) (default: the config's model.sampling.feedback)")
    parser.add_argument("--decode_temperature", type=float, default=None,
                        help="0: the decoder's most probable code at each position (the paper); > 0: codes drawn "
                             "from the decoder at this temperature (default: the config's "
                             "model.sampling.decode_temperature)")


def sampler_from_args(default: Sampler, args) -> Sampler:
    """`default` with the flags of add_sampler_flags that were given."""
    return default.override(**{k: getattr(args, k) for k in ("schedule", "temperature", "show", "feedback",
                                                             "decode_temperature")})


@flax.struct.dataclass
class RolloutState:
    cache: Any  # the temporal transformer's KV cache (window * N positions)
    z: jax.Array  # (B, W, h, w, D): z of the frames in the window
    actions: jax.Array  # (B, W): their actions
    codes: jax.Array  # (B, W, H, W) int32: their VQ-GAN codes (kept frames: re-encoded by feedback and slides)
    length: jax.Array  # int32: frames in the window


def _positions(model: TECO, first_frame, num_frames: int) -> jax.Array:
    n, width = model.temporal.tokens_per_frame, model.temporal.width
    idx = first_frame * n + jnp.arange(num_frames * n)
    return sinusoidal_positions(idx, width)[None]


def prefill(model: TECO, z: jax.Array, actions: jax.Array, codes: jax.Array, length: jax.Array | int,
            window: int) -> RolloutState:
    """Fill a fresh cache with the first `length` frames of the (B, W, ...) window arrays."""
    b = z.shape[0]
    t = model.temporal
    n = t.tokens_per_frame
    a_emb = model.embed_actions(actions)
    tokens = t.sequence(z, a_emb).reshape(b, window * n, t.width)
    cache = t.transformer.init_cache(b, window * n, tokens.dtype)
    # Prefill the whole window with a block-causal mask: frames >= length are computed but
    # never attended to later (each new frame's step overwrites its own slot in order).
    _, cache = t.transformer.prefill(tokens, cache, block_causal_mask(window, n), _positions(model, 0, window))
    cache = tuple(layer.replace(index=jnp.asarray(length, jnp.int32) * n) for layer in cache)
    return RolloutState(cache=cache, z=z, actions=actions, codes=codes, length=jnp.asarray(length, jnp.int32))


def _slide(model: TECO, vq_embeddings: jax.Array, state: RolloutState, window: int, k: int) -> RolloutState:
    """Drop the oldest k frames; re-encode the new first n_cond frames' z continuous, as in
    training; rebuild the cache over the remaining window - k frames."""
    z, actions, codes = (jnp.roll(x, -k, axis=1) for x in (state.z, state.actions, state.codes))
    n_cond = model.cfg.n_cond
    z_first, _ = model.encode(jnp.take(vq_embeddings, codes[:, :n_cond], axis=0))
    z = z.at[:, :n_cond].set(z_first.astype(z.dtype))
    return prefill(model, z, actions, codes, window - k, window)


def _check_modes(sampler: Sampler) -> None:
    if sampler.show not in SHOW or sampler.feedback not in FEEDBACK:
        raise ValueError(f"sampler.show={sampler.show!r} must be one of {SHOW} and sampler.feedback="
                         f"{sampler.feedback!r} one of {FEEDBACK}")
    if not sampler.decode_temperature >= 0:
        raise ValueError(f"sampler.decode_temperature={sampler.decode_temperature!r}: 0 (the decoder's most probable "
                         f"codes) or a positive temperature")
    if sampler.show == "mean" and sampler.feedback == "prior":
        raise ValueError("sampler.show='mean' draws no z from the prior, so feedback must be 'shown' or 'mean'")


def _decode_frame(model: TECO, vq_embeddings: jax.Array, h_BhwD: jax.Array, prev_track_BHW: jax.Array,
                  key: jax.Array, sampler: Sampler, memory_BHWC: jax.Array | None = None):
    """(z_t the next step reads, the shown frame's VQ-GAN codes, the kept frame's codes) from h_t
    (and, with model.memory, its map of earlier frames)."""
    b, gh, gw, d = h_BhwD.shape
    def decode(z):
        logits = model.decoder(z, h_BhwD, memory_BHWC)
        if sampler.decode_temperature > 0:
            return jax.random.categorical(jax.random.fold_in(key, 1), logits.astype(jnp.float32)
                                          / sampler.decode_temperature, axis=-1).astype(jnp.int32)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    mean = decode(jnp.zeros_like(h_BhwD)) if "mean" in (sampler.show, sampler.feedback) else None
    if sampler.show == "sample":
        z_codes = sampler.sample(model.prior, h_BhwD.reshape(b, gh * gw, d), key).reshape(b, gh, gw)
        z_t = model.codebook.lookup(z_codes).astype(h_BhwD.dtype)
        shown = decode(z_t)
    else:
        shown = mean
    if sampler.feedback == "prior":
        return z_t, shown, shown
    if sampler.feedback == "none":  # generated frames are never read back (open loop)
        return jnp.zeros_like(h_BhwD), shown, shown
    track = shown if sampler.feedback == "shown" else mean
    embed = lambda c: jnp.take(vq_embeddings, c, axis=0).astype(h_BhwD.dtype)  # noqa: E731
    z_t = model.codebook(model.encoder(embed(prev_track_BHW), embed(track)))["z_q"].astype(h_BhwD.dtype)
    return z_t, shown, track


def temporal_step(model: TECO, state: RolloutState, action: jax.Array,
                  cached: bool = True) -> tuple[jax.Array, Any, jax.Array]:
    """h_t (B, h, w, D) of the frame at slot state.length (< W), given action a_t (B,).

    Returns (h_t, the cache with that frame's keys/values appended, the (B, W) actions with
    a_t written in). cached=False recomputes the transformer over the whole window.
    """
    t, length = model.temporal, state.length
    actions = jax.lax.dynamic_update_slice_in_dim(state.actions, action[:, None], length, axis=1)
    if not cached:
        h_all = t(state.z, model.embed_actions(actions))  # future slots hold stale z; causality hides them
        return jax.lax.dynamic_index_in_dim(h_all, length, axis=1, keepdims=False), state.cache, actions
    x = t.sequence_at(state.z, model.embed_actions(actions), length)  # (B, N, width)
    y, cache = t.transformer.decode(x, state.cache, jnp.ones((t.tokens_per_frame,) * 2, bool),
                                    _positions(model, length, 1))
    return t.untokens(y[:, None])[:, 0], cache, actions


def memory_at(model: TECO, vq_embeddings: jax.Array, state: RolloutState, actions: jax.Array
              ) -> jax.Array | None:
    """With model.memory, the map of earlier frames the decoder reads (B, H, W, C) for the slot
    state.length, from the kept frames of the window (slots after it are masked); None without.
    Its cost per step is one pass over the window's poses and a gather of K frames: linear in
    the window, like the cached attention's."""
    if model.memory is None:
        return None
    return model.earlier_frames(actions, jnp.take(vq_embeddings, state.codes, axis=0), at=state.length)


def next_frame(model: TECO, vq_embeddings: jax.Array, state: RolloutState, action: jax.Array, key: jax.Array,
               sampler: Sampler, window: int, cached: bool = True) -> tuple[RolloutState, jax.Array]:
    """Generate one frame: returns the new state and its VQ-GAN codes (B, H, W).

    cached=False recomputes the temporal transformer over the whole window instead
    (the authors' method; the reference the cache is tested against).
    """
    if not 1 <= sampler.slide < window:
        raise ValueError(f"sampler.slide={sampler.slide}: slide by 1 to {window - 1} frames (window {window})")
    _check_modes(sampler)
    state = jax.lax.cond(state.length >= window, lambda s: _slide(model, vq_embeddings, s, window, sampler.slide),
                         lambda s: s, state)
    length = state.length
    h_t, cache, actions = temporal_step(model, state, action, cached)
    prev_track = jax.lax.dynamic_index_in_dim(state.codes, length - 1, axis=1, keepdims=False)
    memory_t = memory_at(model, vq_embeddings, state, actions)
    z_t, shown, track = _decode_frame(model, vq_embeddings, h_t, prev_track, key, sampler, memory_t)
    z = jax.lax.dynamic_update_slice_in_dim(state.z, z_t[:, None].astype(state.z.dtype), length, axis=1)
    all_codes = jax.lax.dynamic_update_slice_in_dim(state.codes, track[:, None], length, axis=1)
    return RolloutState(cache=cache, z=z, actions=actions, codes=all_codes, length=length + 1), shown


def start(model: TECO, vq_embeddings: jax.Array, context_codes: jax.Array, context_actions: jax.Array,
          window: int) -> RolloutState:
    """The state after C context frames: codes (B, C, H, W) int, their actions (B, C) int."""
    c = context_codes.shape[1]
    if c > window:
        raise ValueError(f"{c} context frames do not fit the model's window of {window} frames")
    z_ctx, _ = model.encode(jnp.take(vq_embeddings, context_codes, axis=0))
    pad = window - c
    z = jnp.pad(z_ctx, ((0, 0), (0, pad)) + ((0, 0),) * 3)
    a = jnp.pad(context_actions, ((0, 0), (0, pad)), constant_values=model.null_action)
    codes = jnp.pad(context_codes.astype(jnp.int32), ((0, 0), (0, pad), (0, 0), (0, 0)))
    return prefill(model, z, a, codes, c, window)


@nnx.jit(static_argnames=("num_frames", "window", "sampler", "cached"))
def rollout(model: TECO, vq_embeddings: jax.Array, context_codes: jax.Array, actions: jax.Array,
            key: jax.Array, *, num_frames: int, window: int, sampler: Sampler = Sampler(),
            cached: bool = True) -> jax.Array:
    """Codes of a whole video: the C context frames, then num_frames - C generated ones.

    context_codes (B, C, H, W) int, actions (B, num_frames) int (use the model's null
    action for unconditional rollouts), window = the model's trained sequence length.
    Returns (B, num_frames, H, W) int32.
    """
    b, c = context_codes.shape[:2]
    if actions.shape != (b, num_frames):
        raise ValueError(f"actions must have shape ({b}, {num_frames}), got {actions.shape}")
    state = start(model, vq_embeddings, context_codes, actions[:, :c], window)

    def body(state, inputs):
        action, k = inputs
        return next_frame(model, vq_embeddings, state, action, k, sampler, window, cached)

    keys = jax.random.split(key, num_frames - c)
    _, codes = jax.lax.scan(body, state, (jnp.moveaxis(actions[:, c:], 1, 0), keys))
    return jnp.concatenate([context_codes.astype(jnp.int32), jnp.moveaxis(codes, 0, 1)], axis=1)
