import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.nn.attention import MultiHeadAttention
from teco_jax.nn.transformer import (Transformer, block_causal_mask, causal_mask, sinusoidal_positions,
                                     transformer_param_count)
from teco_jax.nn.util import count_params

IN, WIDTH, MLP, HEADS, LAYERS = 6, 16, 24, 2, 2
BLOCKS, BS = 4, 3  # 4 blocks of 3 tokens
L = BLOCKS * BS


@pytest.fixture(scope="module")
def model():
    return Transformer(IN, WIDTH, MLP, HEADS, LAYERS, rngs=nnx.Rngs(0))


_forward = nnx.jit(lambda m, x, mask, pos: m(x, mask, pos))
_decode = nnx.jit(lambda m, x, cache, mask, pos: m.decode(x, cache, mask, pos))


def _x(seed=1, b=2):
    return jax.random.normal(jax.random.key(seed), (b, L, IN))


def test_masks():
    m = np.asarray(block_causal_mask(BLOCKS, BS))
    assert m.shape == (L, L) and m.dtype == bool
    blk = np.arange(L) // BS
    np.testing.assert_array_equal(m, blk[None, :] <= blk[:, None])
    np.testing.assert_array_equal(np.asarray(causal_mask(5)), np.tril(np.ones((5, 5), bool)))


def test_sinusoidal_positions():
    dim = 8
    pe = np.asarray(sinusoidal_positions(10, dim))
    assert pe.shape == (10, dim) and pe.dtype == np.float32
    for p, i in [(0, 0), (3, 1), (7, 2), (9, 3)]:
        f = 1.0 / 10000 ** (2 * i / dim)
        np.testing.assert_allclose(pe[p, i], np.sin(p * f), atol=1e-6)
        np.testing.assert_allclose(pe[p, dim // 2 + i], np.cos(p * f), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sinusoidal_positions(jnp.array([3, 7]), dim)), pe[[3, 7]], atol=1e-6)


def test_causality_by_perturbation(model):
    mask, pos = block_causal_mask(BLOCKS, BS), sinusoidal_positions(L, WIDTH)
    x = _x()
    y = np.asarray(_forward(model, x, mask, pos))
    t = 1  # perturb blocks > t: outputs of blocks <= t are unchanged
    x_future = x.at[:, (t + 1) * BS:].add(jax.random.normal(jax.random.key(5), (2, L - (t + 1) * BS, IN)))
    y_future = np.asarray(_forward(model, x_future, mask, pos))
    np.testing.assert_allclose(y_future[:, :(t + 1) * BS], y[:, :(t + 1) * BS], atol=1e-6)
    assert np.abs(y_future[:, (t + 1) * BS:] - y[:, (t + 1) * BS:]).min() > 0
    # perturb the last token of block t: every token of block t sees it (and later blocks too)
    x_now = x.at[:, (t + 1) * BS - 1].add(1.0)
    y_now = np.asarray(_forward(model, x_now, mask, pos))
    np.testing.assert_allclose(y_now[:, :t * BS], y[:, :t * BS], atol=1e-6)
    assert np.all(np.abs(y_now[:, t * BS:] - y[:, t * BS:]).max(-1) > 1e-4)


@pytest.mark.parametrize("extra", [0, 5])
def test_kv_cache_matches_full_forward(model, extra):
    mask, pos = block_causal_mask(BLOCKS, BS), sinusoidal_positions(L, WIDTH)
    x = _x(seed=2)
    y = np.asarray(_forward(model, x, mask, pos))
    cache = model.init_cache(2, L + extra)
    p = 2 * BS  # prefill two blocks
    y0, cache = _decode(model, x[:, :p], cache, mask[:p, :p], pos[:p])
    outs = [np.asarray(y0)]
    for start in range(p, L, BS):
        yi, cache = _decode(model, x[:, start:start + BS], cache, mask[start:start + BS, start:start + BS],
                            pos[start:start + BS])
        outs.append(np.asarray(yi))
    assert int(cache[0].index) == L and len(cache) == LAYERS
    np.testing.assert_allclose(np.concatenate(outs, 1), y, atol=1e-5, rtol=1e-5)


def test_attention_mask_broadcast_and_fully_masked_rows():
    attn = MultiHeadAttention(WIDTH, HEADS, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(3), (2, 5, WIDTH))
    m = causal_mask(5)
    y1 = attn(x, m)
    y2 = attn(x, jnp.broadcast_to(m, (2, HEADS, 5, 5)))
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y2), atol=1e-6)
    assert np.all(np.isfinite(np.asarray(attn(x, jnp.zeros((5, 5), bool)))))
    y_bf16 = MultiHeadAttention(WIDTH, HEADS, rngs=nnx.Rngs(1), dtype=jnp.bfloat16)(x, m)
    assert y_bf16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y_bf16, np.float32), np.asarray(y1), atol=0.1)


def test_param_count_and_logical_axes(model):
    d, m = WIDTH, MLP
    per_block = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 2 * (2 * d)
    expected = (IN * d + d) + LAYERS * per_block + (d * d + d) + 2 * d
    assert count_params(model) == expected == transformer_param_count(IN, WIDTH, MLP, LAYERS)
    with_out = Transformer(IN, WIDTH, MLP, HEADS, LAYERS, rngs=nnx.Rngs(0), out_dim=7)
    assert count_params(with_out) == expected + d * 7 + 7
    params = nnx.state(model, nnx.Param)
    for path, v in nnx.to_flat_state(params):
        axes = v.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == v.ndim, path
