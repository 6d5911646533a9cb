"""Recall: at initialisation it already reads what followed an earlier copy of the input."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax.nn.recall import FrameRecall, Recall

N, W = 2, 8


def test_a_repeated_input_reads_what_followed_its_earlier_copy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, N, W)).astype(np.float32)
    x[0, 6] = x[0, 2]  # position 6 repeats position 2, so it should read position 3
    recall = Recall(N, W, 16, rngs=nnx.Rngs(0), init_scale=30.0)
    a = np.asarray(recall.weights(jnp.asarray(x)))[0]  # (T, 1 + T): [nothing, positions]
    assert a[6, 1 + 3] > 0.9
    got = np.asarray(recall(jnp.asarray(x)))[0, 6]
    np.testing.assert_allclose(got, np.asarray(recall.value(jnp.asarray(x[0, 3]))), atol=0.2)


def test_only_earlier_positions_are_read():
    x = np.random.default_rng(1).normal(size=(2, 7, N, W)).astype(np.float32)
    a = np.asarray(Recall(N, W, 16, rngs=nnx.Rngs(0)).weights(jnp.asarray(x)))
    t, p = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    assert np.all(a[..., 1:][:, (p > t) | (p == 0)] == 0)  # position p is read through x_{p-1}, up to p = t
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a[:, 0, 0], 1.0)  # the first position has nothing to read


def test_frame_recall_needs_the_same_view_and_the_same_action():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(1, 9, 4, 4, 3)).astype(np.float32)  # 9 frames of 4x4 VQ-GAN embeddings
    a = rng.normal(size=(1, 9, 5)).astype(np.float32)  # their action embeddings
    e[0, 6] = e[0, 2]  # frame 6 shows frame 2's view again
    a[0, 7] = a[0, 3]  # and the same action follows it: position 7 should read position 4 (frame 3)
    recall = FrameRecall(4 * 4 * 3, 5, 32, rngs=nnx.Rngs(0), init_scale=30.0)
    w = np.asarray(recall.weights(jnp.asarray(e), jnp.asarray(a)))[0]
    assert w[7, 1 + 4] > 0.9
    a[0, 7] = rng.normal(size=5)  # the same view, another action: no longer a match
    w = np.asarray(recall.weights(jnp.asarray(e), jnp.asarray(a)))[0]
    assert w[7, 1 + 4] < 0.1
    assert np.all(w[:, 1:][np.triu_indices(9, 1)] == 0)  # never a later position
