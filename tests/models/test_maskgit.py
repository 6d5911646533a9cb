import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.models.maskgit import (MaskGIT, choice_noise_scale, confidence_schedule, mask_tokens,
                                     maskgit_param_count, num_masked)
from teco_jax.nn.util import count_params

K, GRID, COND, TOK, WIDTH, MLP, HEADS, LAYERS = 12, (8, 8), 4, 8, 16, 32, 2, 1
N = GRID[0] * GRID[1]
B = 3


def _model(seed=0):
    return MaskGIT(K, GRID, COND, TOK, WIDTH, MLP, HEADS, LAYERS, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def model():
    return _model()


def _cond(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, N, COND))


def _tokens(seed=2):
    return jax.random.randint(jax.random.key(seed), (B, N), 0, K)


_loss = nnx.jit(lambda m, t, c, k: m.loss(t, c, k))
_logits = nnx.jit(lambda m, t, c: m(t, c))
_draft_revise = nnx.jit(lambda m, c, k: m.sample_draft_revise(c, k, 8, 8, 2, 1.0, return_state=True))
_confidence = nnx.jit(lambda m, c, k: m.sample_confidence(c, k, 8, 1.0, return_state=True))


def test_num_masked_schedule():
    r = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999999, np.nextafter(1.0, 0.0)], np.float32)
    got = np.asarray(num_masked(jnp.asarray(r), N))
    want = np.maximum(1, np.ceil(np.cos(np.pi / 2 * r) * N))
    np.testing.assert_array_equal(got, want)
    assert got[0] == N and got.min() >= 1 and got[-1] == 1


def maskgit_reference_counts(n: int, steps: int) -> list[int]:
    """Tokens left masked after each step, as MaskGIT's paper and reference decoder define them,
    written out independently: mask_ratio = cos(pi/2 * (s+1)/T); mask_len = floor(n * mask_ratio),
    then max(1, min(unknown - 1, mask_len)); the last step returns its samples everywhere."""
    unknown, out = n, []
    for s in range(steps):
        if s == steps - 1:
            k = 0
        else:
            k = max(1, min(unknown - 1, int(np.floor(n * np.cos(np.pi / 2 * (s + 1) / steps)))))
        out.append(k)
        unknown = k
    return out


@pytest.mark.parametrize("n, steps", [(N, 8), (4, 8), (256, 12), (2, 3)])
def test_confidence_schedule_is_maskgits(n, steps):
    unknown, got = n, []
    for s in range(steps):
        unknown = int(confidence_schedule(s, steps, n, unknown))
        got.append(unknown)
    assert got == maskgit_reference_counts(n, steps)


def test_choice_noise_is_annealed_as_in_maskgit():
    """MaskGIT: Gumbel noise on the confidences scaled by choice_temperature * (1 - (s+1)/T)."""
    for s in range(8):
        assert float(choice_noise_scale(s, 8, 4.5)) == pytest.approx(4.5 * (1 - (s + 1) / 8))
    assert float(choice_noise_scale(7, 8, 4.5)) == 0.0  # the last step is noise-free


def test_mask_tokens_counts():
    tokens, key = _tokens(), jax.random.key(7)
    masked, mask = mask_tokens(key, tokens, mask_id=K)
    r = jax.random.uniform(jax.random.split(key)[0], (B,))  # the documented draw order
    np.testing.assert_array_equal(np.asarray(mask).sum(-1), np.asarray(num_masked(r, N)))
    m, t = np.asarray(mask), np.asarray(tokens)
    np.testing.assert_array_equal(np.asarray(masked), np.where(m, K, t))
    with pytest.raises(TypeError):
        mask_tokens(key, tokens, N)  # mask_id is keyword-only and required


def test_loss_is_masked_cross_entropy(model):
    tokens, cond, key = _tokens(), _cond(), jax.random.key(11)
    loss, metrics = _loss(model, tokens, cond, key)
    masked, mask = mask_tokens(key, tokens, mask_id=K)
    logits = np.asarray(_logits(model, masked, cond), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, np.asarray(tokens)[..., None], -1)[..., 0]
    m = np.asarray(mask)
    np.testing.assert_allclose(float(loss), nll[m].mean(), rtol=1e-5)
    acc = (logits.argmax(-1) == np.asarray(tokens))[m].mean()
    np.testing.assert_allclose(float(metrics["accuracy"]), acc, rtol=1e-6)
    # grid-shaped inputs give grid-shaped logits
    logits_grid = model(masked.reshape(B, *GRID), cond.reshape(B, *GRID, COND))
    np.testing.assert_allclose(np.asarray(logits_grid).reshape(B, N, K), logits, atol=1e-5)


def test_logits_tied_to_embedding():
    model = _model()
    tokens, cond = _tokens(), _cond()
    kernels = [v.shape for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    assert not any(s[-1] == K for s in kernels if len(s) == 2)  # no separate output matrix
    assert model.token_embedding.shape == (K + 1, TOK)
    model.logit_bias[...] = jnp.arange(K, dtype=jnp.float32)
    emb = model.token_embedding[...]
    # zero row 5 of the table; keep the input embedding of the tokens unchanged by not using class 5
    tokens = jnp.where(tokens == 5, 4, tokens)
    model.token_embedding[...] = emb.at[5].set(0.0)
    logits = np.asarray(model(tokens, cond))
    np.testing.assert_allclose(logits[..., 5], 5.0, atol=1e-6)
    assert np.abs(logits[..., 4] - 4.0).max() > 1e-4


def test_param_count():
    assert count_params(_model()) == maskgit_param_count(K, GRID, COND, TOK, WIDTH, MLP, LAYERS)
    big = nnx.eval_shape(lambda: MaskGIT(1024, (8, 8), 64, 256, 512, 2048, 8, 8, rngs=nnx.Rngs(0)))
    n = count_params(big)
    print(f"MaskGIT (DMLab config) parameters: {n:,}")
    assert 25.5e6 < n < 26.5e6


def test_draft_revise(model):
    cond = _cond()
    tokens, state = _draft_revise(model, cond, jax.random.key(0))
    assert int(state.num_calls) == 8 + 2 * 8 == 24
    t = np.asarray(tokens)
    assert t.shape == (B, N) and t.dtype == np.int32 and t.min() >= 0 and t.max() < K
    want = [N - N // 8 * (s + 1) for s in range(8)] + [0] * 16  # draft fills 8 groups of 8; revise: none left
    np.testing.assert_array_equal(np.asarray(state.masked_counts), np.broadcast_to(want, (B, 24)))
    tokens2, _ = _draft_revise(model, cond, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(tokens2), t)
    tokens3, _ = _draft_revise(model, cond, jax.random.key(1))
    assert np.any(np.asarray(tokens3) != t)


def test_confidence(model):
    cond = _cond()
    tokens, state = _confidence(model, cond, jax.random.key(0))
    t = np.asarray(tokens)
    assert int(state.num_calls) == 8 and t.min() >= 0 and t.max() < K
    want = maskgit_reference_counts(N, 8)
    np.testing.assert_array_equal(np.asarray(state.masked_counts), np.broadcast_to(want, (B, 8)))
    tokens2, _ = _confidence(model, cond, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(tokens2), t)


_confidence_t = nnx.jit(lambda m, c, k, ct: m.sample_confidence(c, k, 8, 0.0, ct), static_argnums=(3,))


def test_choice_temperature_is_the_only_randomness_of_greedy_sampling(model):
    """With temperature 0 (argmax tokens), the key matters only through the choice noise."""
    cond = _cond()
    a, b = (np.asarray(_confidence_t(model, cond, jax.random.key(k), 0.0)) for k in (0, 1))
    np.testing.assert_array_equal(a, b)
    c, d = (np.asarray(_confidence_t(model, cond, jax.random.key(k), 4.5)) for k in (0, 1))
    assert np.any(c != d)


_conf_step = nnx.jit(lambda m, st, c, s: m.confidence_step(st, c, s, 8, 1.0))


def test_confidence_never_remasks(model):
    cond = _cond()
    state = model.init_sample_state(B, jax.random.key(3), 8)
    prev = np.asarray(state.tokens)
    for s in range(8):
        state = _conf_step(model, state, cond, jnp.int32(s))
        cur = np.asarray(state.tokens)
        revealed = prev != K
        np.testing.assert_array_equal(cur[revealed], prev[revealed])  # revealed stay, unchanged
        np.testing.assert_array_equal((cur == K).sum(-1), maskgit_reference_counts(N, 8)[s])
        prev = cur
    assert int(state.num_calls) == 8 and not np.any(prev == K)


def test_peaked_model_samples_that_token():
    model = _model()
    model.logit_bias[...] = jnp.zeros((K,)).at[3].set(1e4)
    cond = _cond()
    t1, _ = _draft_revise(model, cond, jax.random.key(5))
    t2, _ = _confidence(model, cond, jax.random.key(5))
    assert np.all(np.asarray(t1) == 3) and np.all(np.asarray(t2) == 3)
