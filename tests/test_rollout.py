"""Rollouts: the KV cache changes nothing but the cost, also across the sliding window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax import rollout
from teco_jax.tasks import teco as teco_task
from tests.tasks.test_teco_task import V, tiny_config


@pytest.fixture(scope="module")
def model_and_table():
    task = teco_task.TECOTask(tiny_config())
    return task.build_model(nnx.Rngs(1)), jnp.asarray(task.vq_embeddings)


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
