"""The paper model teco_jax.models.teco.TECO on its own (no model.memory): the shapes
of its parts, the causality of its temporal transformer, and DropLoss (the decoder and the prior see
only the frames it keeps, and the loss is the full loss restricted to them).

The tiny config (tests/helpers/configs.py): windows of T=6 frames of 8x8 VQ-GAN codes < V=32 with
embeddings of size E=8, TECO's 4x4 grid of D=8 channels, n_cond=1, drop_loss_rate=0.5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax import losses
from teco_jax.models.maskgit import MaskGIT
from teco_jax.models.teco import TECO
from teco_jax.tasks.teco import TECOTask
from tests.helpers.configs import T, V, teco_tiny_config

B, E, GRID, D, ACTIONS = 2, 8, (4, 4), 8, 6


@pytest.fixture(scope="module")
def model():
    return TECO(teco_tiny_config().model, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def inputs():
    """A random (V, E) code embedding table, codes (B, T, 8, 8) and actions (B, T)."""
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(V, E)), jnp.float32)
    codes = jnp.asarray(rng.integers(0, V, (B, T, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, ACTIONS, (B, T)), jnp.int32)
    return table, codes, actions


@nnx.jit
def _parts(model, e, actions):
    z, vq = model.encode(e)
    a = model.embed_actions(actions)
    h = model.temporal(z, a)
    return z, vq, a, h, model.decode_logits(z, h)


def test_shapes_of_encode_temporal_and_decode(model, inputs):
    table, codes, actions = inputs
    z, vq, a, h, logits = _parts(model, table[codes], actions)  # D reads z_t and h_t only (no model.memory)
    assert z.shape == vq["z_cont"].shape == (B, T) + GRID + (D,)
    assert vq["codes"].shape == (B, T - 1) + GRID  # frames >= n_cond are quantized
    assert a.shape == (B, T, 4)  # action_embed_dim
    assert h.shape == (B, T) + GRID + (D,)
    assert logits.shape == (B, T, 8, 8, V)  # one distribution over the VQ-GAN's codes per code position
    for x in (z, h, logits):
        assert bool(jnp.all(jnp.isfinite(x)))


@nnx.jit
def _temporal(model, z, actions):
    return model.temporal(z, model.embed_actions(actions))


def _changed(a, b) -> bool:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) > 1e-4


def _with(x: np.ndarray, where, change) -> np.ndarray:
    """A copy of x with x[where] replaced by change(x[where]) (numpy: no new XLA program per index)."""
    x = x.copy()
    x[where] = change(x[where])
    return x


def test_temporal_transformer_is_causal(model, inputs):
    """h_t = H(z_<t, a_<=t): z_t.. and the actions after t cannot reach h_<=t; z_t-1, a_t and (through
    attention) the first frame's z do reach h_t."""
    actions = np.asarray(inputs[2])
    z = np.random.default_rng(1).normal(size=(B, T) + GRID + (D,)).astype(np.float32)
    shift, next_action = (lambda x: x + 1.0), (lambda a: (a + 1) % ACTIONS)
    h = np.asarray(_temporal(model, z, actions))
    for t in range(T):
        later = _temporal(model, _with(z, np.s_[:, t:], shift), _with(actions, np.s_[:, t + 1:], next_action))
        np.testing.assert_allclose(np.asarray(later)[:, :t + 1], h[:, :t + 1], atol=1e-5)
    for t in range(1, T):
        assert _changed(_temporal(model, _with(z, np.s_[:, t - 1], shift), actions)[:, t], h[:, t])
        assert _changed(_temporal(model, z, _with(actions, np.s_[:, t], next_action))[:, t], h[:, t])
    assert _changed(_temporal(model, _with(z, np.s_[:, 0], shift), actions)[:, T - 1], h[:, T - 1])


def _loss_and_what_was_decoded(task, model, codes, actions, table):
    """task.loss (jitted) and the inputs its decoder and prior got: (metrics, z, h, cond, calls),
    caught while tracing; calls counts the decoder's and the prior's calls."""
    caught = {"decoder": [], "prior": []}
    decode, prior_sums = TECO.decode_logits, MaskGIT.masked_loss_sums

    def decode_spy(self, z, h, *rest):
        caught["decoder"].append((z, h))
        return decode(self, z, h, *rest)

    def prior_spy(self, tokens, masked, mask, cond, *rest):
        caught["prior"].append(cond)
        return prior_sums(self, tokens, masked, mask, cond, *rest)

    @nnx.jit
    def run(model, codes, actions, table):
        _, metrics = task.loss(model, {"codes": codes, "actions": actions}, jax.random.key(3), 0,
                               {"vq_embeddings": table})
        (z, h), cond = caught["decoder"][-1], caught["prior"][-1]
        return metrics, z, h, cond

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TECO, "decode_logits", decode_spy)
        mp.setattr(MaskGIT, "masked_loss_sums", prior_spy)
        metrics, z, h, cond = run(model, codes, actions, table)
    return metrics, np.asarray(z), np.asarray(h), np.asarray(cond), (len(caught["decoder"]), len(caught["prior"]))


@pytest.mark.parametrize("rate, kept", [(0.0, T - 1), (0.5, 2)])  # kept = round((1 - rate) * (T - n_cond))
def test_drop_loss_decodes_only_the_kept_frames(model, inputs, rate, kept):
    """TECOTask.loss with drop_loss_rate=rate: the decoder and the prior get `kept` distinct frames >= n_cond
    of each example (all of them at rate 0), exactly those frames' z_t and h_t of the full model, and
    recon_ce is the full model's per-position loss averaged over those frames only."""
    table, codes, actions = inputs
    task = TECOTask(teco_tiny_config(drop_loss_rate=rate))
    metrics, z_dec, h_dec, cond, calls = _loss_and_what_was_decoded(task, model, codes, actions, table)
    assert calls == (1, 1)  # one decoder call, one prior call (no loss_chunk)
    assert z_dec.shape == h_dec.shape == (1, B * kept) + GRID + (D,)
    assert cond.shape == (B * kept, GRID[0] * GRID[1], D)  # the prior's condition: h_t, one token per position
    z_full, _, _, h_full, logits_full = _parts(model, table[codes], actions)
    z_full, h_full = np.asarray(z_full), np.asarray(h_full)
    z_dec, h_dec = z_dec[0].reshape((B, kept) + z_dec.shape[2:]), h_dec[0].reshape((B, kept) + h_dec.shape[2:])
    np.testing.assert_allclose(cond.reshape(h_dec.shape), h_dec, atol=1e-6)
    idx = np.zeros((B, kept), int)
    for b in range(B):
        for j in range(kept):  # the frame whose h_t (unique: h differs from frame to frame) was decoded
            (match,) = [t for t in range(T) if np.allclose(h_full[b, t], h_dec[b, j], atol=1e-4)]
            np.testing.assert_allclose(z_dec[b, j], z_full[b, match], atol=1e-4)
            idx[b, j] = match
    assert all(list(row) == sorted(set(row)) and row.min() >= 1 for row in idx)  # distinct, in [n_cond, T)
    if rate == 0.0:
        np.testing.assert_array_equal(idx, np.broadcast_to(np.arange(1, T), (B, T - 1)))
    ce_full = np.asarray(losses.cross_entropy_per_position(logits_full, codes, 0.01))  # (B, T, 8, 8)
    want = np.mean([ce_full[b, idx[b]] for b in range(B)])
    np.testing.assert_allclose(float(metrics["recon_ce"]), want, rtol=1e-4)
    if rate > 0:  # and it is not the loss over every frame
        assert abs(want - ce_full[:, 1:].mean()) > 1e-4
