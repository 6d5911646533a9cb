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
