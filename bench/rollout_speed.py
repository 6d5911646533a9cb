"""Rollout speed with 300 frames of context: KV-cached steps vs recomputing the window.

    python bench/rollout_speed.py [--presets tiny,full] [--context 300] [--batch 1]

For configs/teco_dmlab.py:tiny and the paper-size configs/teco_dmlab.py, with random
weights (no checkpoint, random context latents z in place of encoded frames), times
generating the frame that follows `context` frames:
  (a) the temporal transformer step alone: h_t from z_<t and a_<=t
      (cached: one decode step against the KV cache; recompute: the whole window, as
      the authors' release does);
  (b) end to end: (a) + MaskGIT (the config's sampler: draft-and-revise, 24 passes) +
      the code decoder D + the VQ-GAN decoder to pixels (configs/vqgan_dmlab.py, same preset).
The window (data.seq_len) is set to context + 1 for both presets (the tiny preset's is 64,
the full one's 300), so the frame after 300 context frames is generated inside the window.
Each measurement is one compiled lax.fori_loop of a few steps, each step starting from the
same 300-frame state (its KV-cache buffer carried and rewound, as a rollout's scan carries
it), compiled first, then the fastest of 3 calls (block_until_ready) divided by the steps.
  (c) the tiny and cpu presets: whole rollouts at the config's window (16 and 128 frames),
      a quarter window of context, inside the window vs --long frames, sliding by 1 frame vs
      by a quarter window (model.sampling.slide).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax import config_base, rollout
from teco_jax.models.teco import TECO
from teco_jax.models.vqgan import VQGAN

STEPS = {  # (preset, part) -> steps timed per path: few for the slow paths
    ("tiny", "temporal"): {True: 200, False: 20},
    ("tiny", "end_to_end"): {True: 10, False: 10},
    ("full", "temporal"): {True: 10, False: 2},
    ("full", "end_to_end"): {True: 2, False: 2},
}


def build(preset: str, context: int, batch: int):
    """Random-weight TECO and VQ-GAN, and a rollout state holding `context` frames."""
    arg = "" if preset == "full" else preset
    cfg = config_base.from_file(f"configs/teco_dmlab.py:{arg}")
    vq_cfg = config_base.from_file(f"configs/vqgan_dmlab.py:{arg}")
    with vq_cfg.unlocked():  # the VQ-GAN TECO expects (the presets may differ in codebook size)
        vq_cfg.model.codebook_size, vq_cfg.model.latent_dim = cfg.model.vq_vocab, cfg.model.vq_embed_dim
    window = context + 1
    model = TECO(cfg.model, rngs=nnx.Rngs(0))
    vqgan = VQGAN(vq_cfg.model, rngs=nnx.Rngs(1))
    m = cfg.model
    key_z, key_a = jax.random.split(jax.random.key(2))
    z = jax.random.normal(key_z, (batch, window) + model.grid + (m.embedding_dim,))
    actions = jax.random.randint(key_a, (batch, window), 0, m.num_actions)
    codes = jnp.zeros((batch, window) + tuple(m.vq_grid), jnp.int32)
    state = nnx.jit(rollout.prefill, static_argnames=("window",))(model, z, actions, codes, context, window=window)
    table = jax.random.normal(jax.random.key(4), (m.vq_vocab, m.vq_embed_dim))
    return cfg, model, vqgan, state, window, table


def _rewind(cache, like):
    return tuple(c.replace(index=old.index) for c, old in zip(cache, like))


@nnx.jit(static_argnames=("cached", "steps"))
def temporal_loop(model, state, action, *, cached: bool, steps: int):
    """`steps` temporal-transformer steps for the frame at slot state.length, chained through
    z_{t-1} (each h_t is written back as z_{t-1}), the cache rewound after each."""

    def body(_, carry):
        z, cache = carry
        h, new_cache, _ = rollout.temporal_step(model, state.replace(z=z, cache=cache), action, cached)
        z = jax.lax.dynamic_update_slice_in_dim(z, h[:, None].astype(z.dtype), state.length - 1, axis=1)
        return z, _rewind(new_cache, state.cache)

    return jax.lax.fori_loop(0, steps, body, (state.z, state.cache))


@nnx.jit(static_argnames=("sampler", "window", "cached", "steps"))
def frame_loop(model, vqgan, table, state, action, key, *, sampler, window: int, cached: bool, steps: int):
    """`steps` whole frames (temporal step, MaskGIT, D, VQ-GAN decoder), each from the same
    state; the pixels are summed so nothing is optimized away."""

    def body(i, carry):
        z, cache, total = carry
        s = state.replace(z=z, cache=cache)
        new, codes = rollout.next_frame(model, table, s, action, jax.random.fold_in(key, i), sampler, window, cached)
        pixels = vqgan.decode_codes(codes)
        return new.z, _rewind(new.cache, state.cache), total + jnp.mean(pixels)

    return jax.lax.fori_loop(0, steps, body, (state.z, state.cache, jnp.zeros(())))


def maskgit_passes(sampler: rollout.Sampler) -> int:
    if sampler.schedule == "draft_revise":
        return sampler.draft_steps + sampler.revise_rounds * sampler.revise_steps
    return sampler.confidence_steps


def timed(fn, *args, repeats: int = 3, **kw) -> float:
    """Seconds of the fastest of `repeats` calls, after a first (compiling) call: the minimum,
    because other work on a shared machine only ever adds time."""
    jax.block_until_ready(fn(*args, **kw))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args, **kw))
        best = min(best, time.perf_counter() - t)
    return best


def bench(preset: str, context: int, batch: int) -> None:
    cfg, model, vqgan, state, window, table = build(preset, context, batch)
    sampler = rollout.Sampler.from_config(cfg.model.sampling)
    action = jnp.zeros((batch,), jnp.int32)
    name = "teco_dmlab.py" + (f":{preset}" if preset != "full" else " (paper size)")
    print(f"{name}: {context} context frames, data.seq_len set to {window} (the config has "
          f"{cfg.data.seq_len}) so they fit with the new frame; batch {batch}; random weights; "
          f"{jax.devices()[0].platform}", flush=True)
    for part in ("temporal", "end_to_end"):
        per_frame = {}
        for cached in (True, False):
            steps = STEPS[(preset, part)][cached]
            if part == "temporal":
                dt = timed(temporal_loop, model, state, action, cached=cached, steps=steps)
            else:
                dt = timed(frame_loop, model, vqgan, table, state, action, jax.random.key(3), sampler=sampler,
                           window=window, cached=cached, steps=steps)
            per_frame[cached] = dt / steps
        label = ("(a) temporal transformer step" if part == "temporal" else
                 f"(b) end to end ({sampler.schedule}: {maskgit_passes(sampler)} MaskGIT passes, D, VQ-GAN decoder)")
        c, r = per_frame[True], per_frame[False]
        print(f"  {label}:\n"
              f"      cached     {c * 1e3:10.3f} ms/frame  {batch / c:10.1f} frames/s\n"
              f"      recompute  {r * 1e3:10.3f} ms/frame  {batch / r:10.1f} frames/s\n"
              f"      speed-up   {r / c:10.1f}x", flush=True)


def long_rollouts(preset: str, batch: int, num_frames: int) -> None:
    """(c) whole rollouts (rollout.rollout, codes only) at the config's own window: inside it
    (window frames) vs num_frames, sliding by 1 frame (rebuild the cache every frame) and by a
    quarter window (rebuild once every window/4 frames)."""
    arg = "" if preset == "full" else preset
    cfg = config_base.from_file(f"configs/teco_dmlab.py:{arg}")
    m, window = cfg.model, cfg.data.seq_len
    context = max(1, window // 4)
    model = TECO(m, rngs=nnx.Rngs(0))
    table = jax.random.normal(jax.random.key(4), (m.vq_vocab, m.vq_embed_dim))
    ctx = jax.random.randint(jax.random.key(5), (batch, context) + tuple(m.vq_grid), 0, m.vq_vocab)
    base = rollout.Sampler.from_config(m.sampling)
    print(f"  (c) whole rollouts, window {window} frames, {context} context frames, batch {batch} "
          f"(frames/s of generated frames):", flush=True)
    for slide in (1, max(1, window // 4)):
        sampler = base.override(slide=slide)
        row = {}
        for n in (window, num_frames):
            actions = jax.random.randint(jax.random.key(6), (batch, n), 0, m.num_actions)
            dt = timed(rollout.rollout, model, table, ctx, actions, jax.random.key(7), num_frames=n, window=window,
                       sampler=sampler, repeats=1)
            row[n] = batch * (n - context) / dt
        print(f"      slide {slide:3d}: {window} frames {row[window]:7.2f}/s   {num_frames} frames "
              f"{row[num_frames]:7.2f}/s   ratio {row[num_frames] / row[window]:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,full", help="comma-separated: tiny, full")
    p.add_argument("--context", type=int, default=300, help="frames already in the window")
    p.add_argument("--batch", type=int, default=1, help="videos generated at once")
    p.add_argument("--long", type=int, default=1000, help="frames of the long rollouts of part (c)")
    p.add_argument("--long_presets", default="tiny,cpu", help="presets for part (c); empty: skip it")
    args = p.parse_args()
    start = time.perf_counter()
    for preset in args.presets.split(","):
        if preset not in ("tiny", "full"):
            p.error(f"unknown preset {preset!r} (tiny or full)")
        bench(preset, args.context, args.batch)
    for preset in filter(None, args.long_presets.split(",")):  # not "full": 1,000 frames take hours here
        if preset not in ("tiny", "cpu"):
            p.error(f"unknown --long_presets entry {preset!r} (tiny or cpu)")
        long_rollouts(preset, args.batch, args.long)
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
