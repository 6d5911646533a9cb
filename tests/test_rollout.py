"""Rollouts: the KV cache changes nothing but the cost, also across the sliding window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax import rollout
from teco_jax.tasks import teco as teco_task
from tests.helpers.configs import MEMORY, V
from tests.helpers.configs import teco_tiny_config as tiny_config


def _model_and_table(**model):
    task = teco_task.TECOTask(tiny_config(**model))
    return task.build_model(nnx.Rngs(1)), jnp.asarray(task.vq_embeddings)


@pytest.fixture(scope="module")
def model_and_table():
    return _model_and_table()


@pytest.mark.parametrize("num_frames, window", [(6, 6), (9, 5)])  # within the window; sliding past it
def test_cached_equals_uncached(model_and_table, num_frames, window):
    model, table = model_and_table
    rng = np.random.default_rng(0)
    context = jnp.asarray(rng.integers(0, V, (2, 2, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 6, (2, num_frames)), jnp.int32)
    sampler = rollout.Sampler(draft_steps=2, revise_steps=2, revise_rounds=1)
    kw = dict(num_frames=num_frames, window=window, sampler=sampler)
    cached = rollout.rollout(model, table, context, actions, jax.random.key(0), cached=True, **kw)
    uncached = rollout.rollout(model, table, context, actions, jax.random.key(0), cached=False, **kw)
    assert cached.shape == (2, num_frames, 8, 8)
    np.testing.assert_array_equal(cached[:, :2], context)
    np.testing.assert_array_equal(cached, uncached)
    other = rollout.rollout(model, table, context, actions, jax.random.key(1), cached=True, **kw)
    assert not np.array_equal(other, cached)  # the key matters


def _reference_rollout(model, table, context, actions, window, slide, sampler):
    """Written out frame by frame, without the cache or the rollout state: frame t sees the
    frames of its window [s, t), where s advances by `slide` each time the window is full; the
    first n_cond frames of a window are encoded continuous from their VQ-GAN codes (as in
    training), the others keep the z they were generated (or encoded) with; h_t comes from
    `model.temporal` run from scratch on the window."""
    b, c = context.shape[:2]
    n_cond = model.cfg.n_cond
    z_all, _ = model.encode(table[context])
    zs, codes = [z_all[:, i] for i in range(c)], [context[:, i] for i in range(c)]
    start = 0
    for t in range(c, actions.shape[1]):
        if t - start >= window:
            start += slide
        z_first, _ = model.encode(table[jnp.stack(codes[start:start + n_cond], axis=1)])
        z_win = jnp.stack([z_first[:, i] if i < n_cond else zs[start + i] for i in range(t - start)]
                          + [jnp.zeros_like(zs[0])], axis=1)  # frame t's own z: unseen by h_t
        a_win = model.embed_actions(actions[:, start:t + 1])
        h_t = model.temporal(z_win, a_win)[:, -1]
        e_win = table[jnp.stack(codes[start:t] + [codes[-1]], axis=1)]  # the last slot: unseen, like z
        memory = model.earlier_frames(actions[:, start:t + 1], e_win)  # model.memory: earlier frames near frame t
        gh, gw, d = h_t.shape[1:]
        z_codes = sampler.sample(model.prior, h_t.reshape(b, gh * gw, d), jax.random.key(0)).reshape(b, gh, gw)
        z_t = model.codebook.lookup(z_codes).astype(h_t.dtype)
        zs.append(z_t)
        codes.append(jnp.argmax(model.decoder(z_t, h_t, None if memory is None else memory[:, -1]),
                                axis=-1).astype(jnp.int32))
    return jnp.stack(codes, axis=1)


@pytest.mark.parametrize("slide, switches", [(1, False), (2, True)])
def test_sliding_past_the_window_matches_a_from_scratch_reference(model_and_table, slide, switches):
    """10 frames through a window of 5 (2 context): the cached rollout equals the written-out
    reference, for the exact sliding window, and for sliding 2 frames at a time with the
    decoder reading the earlier frames nearest the dead-reckoned pose (model.memory). The
    sampler is greedy and key-free (confidence, temperatures 0), so any difference comes from
    h_t and the memory."""
    model, table = (_model_and_table(memory=MEMORY) if switches
                    else model_and_table)
    rng = np.random.default_rng(3)
    context = jnp.asarray(rng.integers(0, V, (2, 2, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 7, (2, 10)), jnp.int32)  # 6 = the null action
    sampler = rollout.Sampler(schedule="confidence", confidence_steps=3, temperature=0.0, choice_temperature=0.0,
                              slide=slide)
    got = rollout.rollout(model, table, context, actions, jax.random.key(5), num_frames=10, window=5,
                          sampler=sampler)
    want = nnx.jit(_reference_rollout, static_argnums=(4, 5, 6))(model, table, context, actions, 5, slide, sampler)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _reference_feedback_rollout(model, table, context, actions, window, sampler):
    """feedback = "shown" or "mean": every kept frame's z is the posterior of its codes, so h_t is
    the teacher-forced model run on the kept codes so far (the last `window` frames, encoded
    from scratch with `model.encode`, as in training); the kept frame is the shown one or the
    h_t-alone one, argmax D(0, h_t)."""
    b, c = context.shape[:2]
    kept, shown = [context[:, i] for i in range(c)], []
    for t in range(c, actions.shape[1]):
        s = max(0, t + 1 - window)
        z_win, _ = model.encode(table[jnp.stack(kept[s:t] + [kept[-1]], axis=1)])  # the last slot is unseen
        h_t = model.temporal(z_win, model.embed_actions(actions[:, s:t + 1]))[:, -1]
        mean = jnp.argmax(model.decoder(jnp.zeros_like(h_t), h_t), axis=-1).astype(jnp.int32)
        if sampler.show == "mean":
            frame = mean
        else:
            gh, gw, d = h_t.shape[1:]
            z_codes = sampler.sample(model.prior, h_t.reshape(b, gh * gw, d), jax.random.key(0))
            z_t = model.codebook.lookup(z_codes.reshape(b, gh, gw)).astype(h_t.dtype)
            frame = jnp.argmax(model.decoder(z_t, h_t), axis=-1).astype(jnp.int32)
        shown.append(frame)
        kept.append(frame if sampler.feedback == "shown" else mean)
    return jnp.concatenate([context, jnp.stack(shown, axis=1)], axis=1)


@pytest.mark.parametrize("show, feedback", [("mean", "mean"), ("sample", "shown"), ("sample", "mean")])
def test_encoded_feedback_is_the_teacher_forced_model_run_on_its_own_frames(model_and_table, show, feedback):
    """9 frames through a window of 5: with feedback = "shown" or "mean" the rollout equals the
    teacher-forced model applied to the frames it keeps; show = "mean" decodes h_t alone. The
    modes differ from each other and from the paper's feedback of the prior's z."""
    model, table = model_and_table
    rng = np.random.default_rng(4)
    context = jnp.asarray(rng.integers(0, V, (2, 2, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 7, (2, 9)), jnp.int32)
    sampler = rollout.Sampler(schedule="confidence", confidence_steps=3, temperature=0.0, choice_temperature=0.0,
                              show=show, feedback=feedback)
    kw = dict(num_frames=9, window=5)
    got = rollout.rollout(model, table, context, actions, jax.random.key(5), sampler=sampler, **kw)
    want = nnx.jit(_reference_feedback_rollout, static_argnums=(4, 5))(model, table, context, actions, 5, sampler)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    others = [("sample", "prior")] + [m for m in [("mean", "mean"), ("sample", "shown"), ("sample", "mean")]
                                      if m != (show, feedback)]
    for other in others:
        differs = rollout.rollout(model, table, context, actions, jax.random.key(5),
                                  sampler=sampler.override(show=other[0], feedback=other[1]), **kw)
        assert not np.array_equal(np.asarray(differs), np.asarray(got)), other


def test_bad_sampler_modes_are_named(model_and_table):
    model, table = model_and_table
    for bad, match in [(dict(show="mean"), "feedback must be 'shown' or 'mean'"),
                       (dict(feedback="posterior"), "one of"),
                       (dict(decode_temperature=-1.0), "decode_temperature=-1.0")]:
        with pytest.raises(ValueError, match=match):
            rollout.rollout(model, table, jnp.zeros((1, 2, 8, 8), jnp.int32), jnp.zeros((1, 4), jnp.int32),
                            jax.random.key(0), num_frames=4, window=5, sampler=rollout.Sampler(**bad))


def test_a_slide_must_leave_frames_in_the_window(model_and_table):
    model, table = model_and_table
    with pytest.raises(ValueError, match="slide by 1 to 4 frames"):
        rollout.rollout(model, table, jnp.zeros((1, 2, 8, 8), jnp.int32), jnp.zeros((1, 7), jnp.int32),
                        jax.random.key(0), num_frames=7, window=5, sampler=rollout.Sampler(slide=5))


def test_context_longer_than_window_is_an_error(model_and_table):
    model, table = model_and_table
    with pytest.raises(ValueError, match="do not fit the model's window"):
        rollout.rollout(model, table, jnp.zeros((1, 7, 8, 8), jnp.int32), jnp.zeros((1, 9), jnp.int32),
                        jax.random.key(0), num_frames=9, window=6)


def test_draft_revise_makes_24_maskgit_calls_per_frame_and_reveals_every_position(model_and_table, monkeypatch):
    """Count the prior's model calls inside the compiled rollout (a debug callback per call) and
    look at what each call sees: the draft fills 8 disjoint groups of N/8 positions, then each of
    the 2 revision rounds resamples every position once, N/8 at a time; no [MASK] is left."""
    from teco_jax.models.maskgit import MaskGIT

    model, table = model_and_table
    n, mask_id = model.prior.num_tokens, model.prior.mask_id
    seen, sampled = [], []
    logits, sample = MaskGIT._logits, rollout.Sampler.sample

    def counting_logits(self, tokens_BN, cond_BNC):
        jax.debug.callback(lambda t: seen.append(np.asarray(t) == mask_id), tokens_BN, ordered=True)
        return logits(self, tokens_BN, cond_BNC)

    def recording_sample(self, prior, h_BnD, key):
        tokens = sample(self, prior, h_BnD, key)
        jax.debug.callback(lambda t: sampled.append(np.asarray(t)), tokens, ordered=True)
        return tokens

    monkeypatch.setattr(MaskGIT, "_logits", counting_logits)
    monkeypatch.setattr(rollout.Sampler, "sample", recording_sample)
    fresh = nnx.jit(rollout.rollout.fun, static_argnames=("num_frames", "window", "sampler", "cached"))  # own cache
    b, c, num_frames, window = 3, 2, 5, 6
    rng = np.random.default_rng(1)
    context = jnp.asarray(rng.integers(0, V, (b, c, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 6, (b, num_frames)), jnp.int32)
    fresh(model, table, context, actions, jax.random.key(2), num_frames=num_frames, window=window,
          sampler=rollout.Sampler()).block_until_ready()

    generated, per_frame = num_frames - c, 8 + 2 * 8
    assert len(seen) == generated * per_frame
    assert len(sampled) == generated
    for tokens in sampled:  # every position of every generated frame was revealed
        assert tokens.shape == (b, n) and tokens.min() >= 0 and tokens.max() < mask_id
    group = n // 8
    for f in range(generated):
        masks = np.stack(seen[f * per_frame:(f + 1) * per_frame])  # (24 calls, B, N): True = [MASK]
        counts = masks.sum(-1)
        np.testing.assert_array_equal(counts[:8], np.repeat([[n - i * group] for i in range(8)], b, axis=1))
        np.testing.assert_array_equal(masks[1:8], masks[1:8] & masks[:7])  # revealed positions stay revealed
        np.testing.assert_array_equal(counts[8:], group)  # each revision resamples one group of N / 8
        for r in range(2):  # ... and each round of 8 revisions covers every position exactly once
            np.testing.assert_array_equal(masks[8 + 8 * r:16 + 8 * r].sum(0), 1)


def test_sampler_override_replaces_given_fields_only():
    base = rollout.Sampler(schedule="draft_revise", temperature=1.0)
    assert base.override(schedule=None, temperature=None) == base
    assert base.override(schedule="confidence", temperature=None) == rollout.Sampler(schedule="confidence")
    assert base.override(temperature=0.5).temperature == 0.5


@pytest.mark.parametrize("show", ["mean", "sample"])
def test_no_feedback_is_one_teacher_forced_pass_with_the_generated_inputs_zeroed(model_and_table, show):
    """feedback = "none" never reads a generated frame back: within the window, every h_t is
    the transformer run once on the context's posteriors followed by zeros (what
    an open-loop rollout), and the shown frames are decoded from it."""
    model, table = model_and_table
    rng = np.random.default_rng(6)
    context = jnp.asarray(rng.integers(0, V, (2, 3, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 7, (2, 7)), jnp.int32)
    sampler = rollout.Sampler(schedule="confidence", confidence_steps=3, temperature=0.0, choice_temperature=0.0,
                              show=show, feedback="none")
    got = rollout.rollout(model, table, context, actions, jax.random.key(5), sampler=sampler, num_frames=7, window=7)
    z_ctx, _ = model.encode(table[context])
    z = jnp.concatenate([z_ctx, jnp.zeros((2, 4) + z_ctx.shape[2:], z_ctx.dtype)], axis=1)
    h = model.temporal(z, model.embed_actions(actions))[:, 3:]
    if show == "mean":
        want = jnp.argmax(model.decode_logits(jnp.zeros_like(h), h), axis=-1)
    else:
        b, n, gh, gw, d = h.shape
        z_codes = sampler.sample(model.prior, h.reshape(b * n, gh * gw, d), jax.random.key(0))
        z_t = model.codebook.lookup(z_codes.reshape(b, n, gh, gw)).astype(h.dtype)
        want = jnp.argmax(model.decode_logits(z_t, h), axis=-1)
    np.testing.assert_array_equal(np.asarray(got[:, 3:]), np.asarray(want))
    fed_back = rollout.rollout(model, table, context, actions, jax.random.key(5), num_frames=7, window=7,
                               sampler=sampler.override(feedback="shown"))
    assert not np.array_equal(np.asarray(fed_back), np.asarray(got))



def test_decode_temperature_draws_codes_from_the_decoder(model_and_table):
    """decode_temperature > 0: codes drawn from D (the key matters; the cache still changes
    nothing); a temperature near 0 gives D's argmax, the default."""
    model, table = model_and_table
    rng = np.random.default_rng(0)
    context = jnp.asarray(rng.integers(0, V, (2, 2, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 6, (2, 7)), jnp.int32)
    kw = dict(num_frames=7, window=5)

    def run(key, cached=True, **sampler):
        s = rollout.Sampler(show="mean", feedback="mean", slide=2, **sampler)
        return np.asarray(rollout.rollout(model, table, context, actions, jax.random.key(key), sampler=s,
                                          cached=cached, **kw))

    drawn = run(0, decode_temperature=1.0)
    np.testing.assert_array_equal(drawn, run(0, cached=False, decode_temperature=1.0))
    assert not np.array_equal(drawn, run(1, decode_temperature=1.0))
    np.testing.assert_array_equal(run(0, decode_temperature=1e-6), run(3))
    assert not np.array_equal(drawn, run(3))
