"""TECO: the tests that catch the classic bugs (causality, DropLoss, quantization, actions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.tasks import teco as teco_task
from tests.helpers.configs import MEMORY, T, V
from tests.helpers.configs import teco_tiny_config as tiny_config


@pytest.fixture(scope="module")
def setup():
    task = teco_task.TECOTask(tiny_config())
    model = task.build_model(nnx.Rngs(0))
    rng = np.random.default_rng(0)
    codes = jnp.asarray(rng.integers(0, V, (2, T, 8, 8)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, 6, (2, T)), jnp.int32)
    return task, model, codes, actions


@nnx.jit
def _h(model, e, actions):
    z, _ = model.encode(e)
    a = model.embed_actions(actions)
    h = model.temporal(z, a)
    memory = model.earlier_frames(actions, e)  # model.memory: the earlier frames D reads, as causal as h
    return h if memory is None else jnp.concatenate([h.reshape(h.shape[:2] + (-1,)),
                                                     memory.reshape(memory.shape[:2] + (-1,))], axis=-1)


@pytest.mark.parametrize("switches", [False, True])
def test_causality_of_the_temporal_transformer(setup, switches):
    task, model, codes, actions = setup
    if switches:  # the decoder also reads the frames nearest the dead-reckoned pose (memory): still causal
        task = teco_task.TECOTask(tiny_config(memory=MEMORY))
        model = task.build_model(nnx.Rngs(0))
        assert model.memory is not None and model.memory.motion is not None
    table = jnp.asarray(task.vq_embeddings)
    h = _h(model, table[codes], actions)
    for t in range(1, T):
        # frames >= t (their codes, hence z_{>=t}) and actions > t cannot reach h_{<=t}
        later_codes = codes.at[:, t:].set((codes[:, t:] + 7) % V)
        later_actions = actions.at[:, t + 1:].set((actions[:, t + 1:] + 1) % 6)
        h2 = _h(model, table[later_codes], later_actions)
        np.testing.assert_allclose(h2[:, :t + 1], h[:, :t + 1], atol=1e-5)
        # frame t-1 and action t do reach h_t
        prev_codes = codes.at[:, t - 1].set((codes[:, t - 1] + 7) % V)
        assert float(jnp.abs(_h(model, table[prev_codes], actions)[:, t] - h[:, t]).max()) > 1e-4
        act_t = actions.at[:, t].set((actions[:, t] + 1) % 6)
        assert float(jnp.abs(_h(model, table[codes], act_t)[:, t] - h[:, t]).max()) > 1e-4


def test_first_frame_is_not_quantized(setup):
    task, model, codes, _ = setup
    z, vq = model.encode(jnp.asarray(task.vq_embeddings)[codes])
    np.testing.assert_array_equal(z[:, 0], vq["z_cont"][:, 0])  # continuous
    assert vq["codes"].shape == (2, T - 1, 4, 4)  # only frames >= n_cond get codes
    np.testing.assert_allclose(z[:, 1:], model.codebook.lookup(vq["codes"]), atol=1e-5)


@pytest.mark.parametrize("rate, frames", [(0.9, 300), (0.5, 6), (0.0, 6), (0.99, 10)])
def test_drop_loss_indices(rate, frames):
    idx = np.asarray(teco_task.drop_loss_indices(jax.random.key(3), 16, frames, 1, rate))
    expected = max(1, round((1 - rate) * (frames - 1)))
    assert idx.shape == (16, expected)
    for row in idx:
        assert len(set(row)) == expected and row.min() >= 1 and row.max() < frames
    if rate > 0 and expected > 1:
        assert len({tuple(r) for r in idx}) > 1  # drawn per example


def test_drop_loss_equals_full_loss_restricted_to_the_chosen_frames(setup):
    task, model, codes, actions = setup
    const = task.constants()
    key = jax.random.key(5)
    full = task.forward(model, codes, actions, key, const, drop_rate=0.0)
    part = task.forward(model, codes, actions, key, const, drop_rate=0.5)
    from teco_jax import losses

    def per_frame(out):
        return jax.vmap(jax.vmap(lambda lg, c: losses.cross_entropy_with_label_smoothing(lg, c, 0.01)))(
            out["logits"], out["codes"])

    full_pf, part_pf = per_frame(full), per_frame(part)
    for b in range(2):
        np.testing.assert_allclose(part_pf[b], full_pf[b][np.asarray(part["idx"][b]) - 1], rtol=1e-5)
        assert float(jnp.mean(part_pf[b])) == pytest.approx(float(jnp.mean(full_pf[b][np.asarray(part["idx"][b]) - 1])), rel=1e-5)


def test_action_dropout_and_null_action():
    actions = jnp.asarray(np.random.default_rng(0).integers(0, 6, (4000, 5)), jnp.int32)
    out = np.asarray(teco_task.action_dropout(jax.random.key(0), actions, 0.5, 6))
    dropped = (out == 6).all(axis=1)
    kept = (out == np.asarray(actions)).all(axis=1)
    assert np.all(dropped | kept)  # whole videos, never single frames
    assert 0.45 < dropped.mean() < 0.55
    np.testing.assert_array_equal(np.asarray(teco_task.action_dropout(jax.random.key(0), actions, 0.0, 6)), actions)
    # the null action has its own embedding, distinct from every real action
    task = teco_task.TECOTask(tiny_config())
    model = task.build_model(nnx.Rngs(0))
    emb = model.embed_actions(jnp.arange(7))
    assert emb.shape == (7, 4) and float(jnp.abs(emb[6] - emb[:6]).min()) > 0
    # use_actions=False: every action is the null action, so actions cannot change h
    off = teco_task.TECOTask(tiny_config(use_actions=False))
    m2 = off.build_model(nnx.Rngs(0))
    codes = jnp.zeros((1, T, 8, 8), jnp.int32)
    o1 = off.forward(m2, codes, jnp.zeros((1, T), jnp.int32), jax.random.key(0), off.constants(), 0.0)
    o2 = off.forward(m2, codes, jnp.ones((1, T), jnp.int32), jax.random.key(0), off.constants(), 0.0)
    np.testing.assert_array_equal(o1["h"], o2["h"])



def test_action_dropout_is_for_training_only():
    """Training drops whole videos' actions; evaluation always conditions on the true actions."""
    task = teco_task.TECOTask(tiny_config(action_dropout=1.0))
    model = task.build_model(nnx.Rngs(0))
    codes = jnp.asarray(np.random.default_rng(1).integers(0, V, (2, T, 8, 8)), jnp.int32)
    actions = jnp.asarray(np.random.default_rng(2).integers(0, 6, (2, T)), jnp.int32)
    null = jnp.full_like(actions, model.null_action)
    const = task.constants()

    @nnx.jit(static_argnums=2)
    def _run(model, a, train):
        return task.forward(model, codes, a, jax.random.key(3), const, 0.0, train=train)["h"]

    run = lambda a, train: _run(model, a, train)
    np.testing.assert_array_equal(run(actions, True), run(null, True))  # rate 1: every video dropped
    full_h = _h(model, jnp.asarray(task.vq_embeddings)[codes], actions)
    np.testing.assert_allclose(run(actions, False), full_h[:, 1:], atol=1e-5)  # frames >= n_cond
    assert float(jnp.abs(run(actions, False) - run(null, False)).max()) > 0

def test_z_dropout_hides_z_from_the_decoder_in_training_only():
    """z_dropout zeroes whole frames of the decoder's z input at the given rate, in training only."""
    z = jnp.ones((400, 5, 2, 2, 3))
    kept = np.asarray(teco_task.z_dropout(jax.random.key(0), z, 0.25)).reshape(400, 5, -1)
    assert np.all((kept == 0).all(-1) | (kept == 1).all(-1))  # whole frames, never single positions
    assert 0.70 < (kept == 1).all(-1).mean() < 0.80
    codes = jnp.asarray(np.random.default_rng(1).integers(0, V, (2, T, 8, 8)), jnp.int32)
    actions = jnp.zeros((2, T), jnp.int32)
    task = teco_task.TECOTask(tiny_config(z_dropout=1.0))
    model = task.build_model(nnx.Rngs(0))
    const, key = task.constants(), jax.random.key(3)
    train = task.forward(model, codes, actions, key, const, 0.0, train=True)
    evaluation = task.forward(model, codes, actions, key, const, 0.0, train=False)
    blind = model.decode_logits(jnp.zeros_like(evaluation["h"]), evaluation["h"])
    np.testing.assert_allclose(train["logits"], blind, atol=1e-5)  # rate 1: the decoder reads h_t only
    np.testing.assert_allclose(evaluation["logits"], model.decode_logits(
        teco_task.take_frames(model.encode(jnp.asarray(task.vq_embeddings)[codes])[0], evaluation["idx"]),
        evaluation["h"]), atol=1e-5)
    assert float(jnp.abs(evaluation["logits"] - blind).max()) > 1e-3


def test_loss_is_finite_and_trains(setup):
    task, model, codes, actions = setup
    graph, params = nnx.split(model)
    const = task.constants()

    @jax.jit
    def step(p):
        (l, m), g = jax.value_and_grad(lambda p: task.loss(nnx.merge(graph, p), {"codes": codes, "actions": actions},
                                                            jax.random.key(1), 0, const), has_aux=True)(p)
        return l, m, jax.tree.map(lambda a, b: a - 1e-2 * b, p, g)

    l0, metrics, params = step(params)
    assert np.isfinite(float(l0)) and set(metrics) >= {"recon_ce", "prior_ce", "vq", "recon_acc"}
    for _ in range(5):
        l1, _, params = step(params)
    assert float(l1) < float(l0)


def test_evaluate_reports_prediction_and_baseline(setup):
    task, model, codes, actions = setup
    batch = {"codes": np.asarray(codes), "actions": np.asarray(actions)}
    out = task.evaluate(model, iter([batch]), task.constants())
    assert set(out) == {"recon_acc", "next_frame_acc", "h_only_acc", "copy_prev_acc", "recon_ce", "open_loop_acc",
                        "copy_last_acc"}
    out_h = task.forward(model, codes, actions, jax.random.key(0), task.constants(), 0.0, train=False)["h"]
    h_only = jnp.argmax(model.decode_logits(jnp.zeros_like(out_h), out_h), -1)
    assert out["h_only_acc"] == pytest.approx(float(jnp.mean(h_only == codes[:, 1:])), abs=1e-6)
    prev_same = float(np.mean(np.asarray(codes)[:, :-1] == np.asarray(codes)[:, 1:]))
    assert out["copy_prev_acc"] == pytest.approx(prev_same, abs=1e-6)  # every frame >= n_cond, no DropLoss
    # open loop: the second half from the first half's frames and every action, inputs zeroed
    z = model.encode(jnp.asarray(task.vq_embeddings)[codes])[0]
    half = T // 2
    h = model.temporal(z.at[:, half:].set(0), model.embed_actions(actions))[:, half:]
    pred = jnp.argmax(model.decode_logits(jnp.zeros_like(h), h), -1)
    assert out["open_loop_acc"] == pytest.approx(float(jnp.mean(pred == codes[:, half:])), abs=1e-6)
    assert out["copy_last_acc"] == pytest.approx(float(np.mean(np.asarray(codes)[:, half - 1:half]
                                                               == np.asarray(codes)[:, half:])), abs=1e-6)
    assert out["open_loop_acc"] != pytest.approx(out["h_only_acc"])


def test_remat_changes_memory_not_numbers():
    """model.remat recomputes transformer blocks in the backward pass: same loss, same gradients."""
    rng = np.random.default_rng(0)
    batch = {"codes": jnp.asarray(rng.integers(0, V, (2, T, 8, 8)), jnp.int32),
             "actions": jnp.asarray(rng.integers(0, 6, (2, T)), jnp.int32)}
    results = []
    for remat in (False, True):
        task = teco_task.TECOTask(tiny_config(remat=remat))
        model = task.build_model(nnx.Rngs(0))
        constants = task.constants()
        loss, grads = nnx.jit(nnx.value_and_grad(lambda m: task.loss(m, batch, jax.random.key(0), 0, constants)[0]))(
            model)
        results.append((float(loss), jax.tree.leaves(grads)))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_loss_chunks_change_memory_not_numbers():
    """model.loss_chunk decodes and scores the kept frames in groups (lax.map + checkpoint);
    10 frames in groups of 4 (the last padded): same loss, metrics and gradients."""
    rng = np.random.default_rng(1)
    batch = {"codes": jnp.asarray(rng.integers(0, V, (2, T, 8, 8)), jnp.int32),
             "actions": jnp.asarray(rng.integers(0, 6, (2, T)), jnp.int32)}
    results = []
    for chunk in (0, 4):
        task = teco_task.TECOTask(tiny_config(loss_chunk=chunk, drop_loss_rate=0.0))
        model = task.build_model(nnx.Rngs(0))
        constants = task.constants()
        (loss, metrics), grads = nnx.jit(nnx.value_and_grad(
            lambda m: task.loss(m, batch, jax.random.key(0), 0, constants), has_aux=True))(model)
        results.append((float(loss), metrics, jax.tree.leaves(grads)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for k in results[0][1]:
        assert float(results[0][1][k]) == pytest.approx(float(results[1][1][k]), rel=1e-5, abs=1e-7), k
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)  # gradients are O(1)
    assert max(float(jnp.abs(g).max()) for g in results[1][2]) > 0.1


