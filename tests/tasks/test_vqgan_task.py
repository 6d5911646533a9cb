"""The VQ-GAN task: the one-loss GAN trick routes each gradient to its own objective."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax import losses, trainer
from teco_jax.tasks.vqgan import VQGANTask, to_float
from tests.helpers.configs import teco_tiny_config as teco_config
from tests.helpers.configs import vqgan_tiny_config as tiny_config
from tests.helpers.episodes import write_episodes


def _grad_fn(task, model, frames):
    """jit(grad of the task loss w.r.t. all parameters) as a function of the step."""
    graph, params = nnx.split(model)

    @jax.jit
    def grads(step):
        return jax.grad(lambda p: task.loss(nnx.merge(graph, p), {"frames": frames}, jax.random.key(0), step, None)[0])(params)

    return lambda step: grads(jnp.int32(step))


def test_gradients_go_to_their_own_objective():
    task = VQGANTask(tiny_config(gan_weight=0.0, disc_start=5))
    model = task.build_model(nnx.Rngs(0))
    frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    grads = _grad_fn(task, model, frames)
    before, after = grads(0), grads(5)
    # With gan_weight 0 the discriminator loss must not leak into the tokenizer's gradients.
    for a, b in zip(jax.tree.leaves(before["vqgan"]), jax.tree.leaves(after["vqgan"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The discriminator gets exactly the gradient of the hinge loss on real vs (frozen) fake frames.
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(before["disc"]))
    x = to_float(frames)
    x_rec = jax.lax.stop_gradient(model.vqgan(x)[0])
    graph, dparams = nnx.split(model.disc)
    want = jax.grad(lambda p: losses.hinge_d_loss(nnx.merge(graph, p)(x), nnx.merge(graph, p)(x_rec)))(dparams)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(after["disc"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _train(tmp, train=None, **loss):
    written = write_episodes(tmp / "src", {"train": 8, "test": 4}, size=32, length=4)
    from teco_jax.data import tfds_write

    tfds_write.build_from_episodes(tmp / "src", tmp / "tfds", name="frames32", num_actions=6)
    cfg = tiny_config(tmp / "tfds", **loss)
    cfg.train.update(train or {})
    state = trainer.Trainer(cfg, tmp / "run").train()
    return tmp, state, written


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three steps with the GAN and LPIPS losses, evaluation and sample images."""
    return _train(tmp_path_factory.mktemp("vqgan"), lpips_weight=0.1, disc_start=1)


@pytest.fixture(scope="module")
def vqgan_run(tmp_path_factory):
    """A VQ-GAN run directory to read codes from: one reconstruction-only step, no evaluation or
    images (the GAN, LPIPS and evaluation add nothing that encoding reads, and most of the
    compile time)."""
    return _train(tmp_path_factory.mktemp("vqgan_run"), train=dict(num_steps=1, ckpt_every=1, image_every=0),
                  gan_weight=0.0, disc_start=10**6)


@pytest.mark.slow
def test_trains_with_gan_and_lpips(trained):
    tmp, state, _ = trained
    assert int(state.step) == 3
    rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    assert train_rows[0]["train/gan_lambda"] == 0 and train_rows[-1]["train/gan_lambda"] > 0
    assert all(np.isfinite(r["train/loss"]) for r in train_rows)
    evals = [r for r in rows if "eval/psnr" in r]
    assert evals and 0 <= evals[-1]["eval/codebook_usage"] <= 1 and "eval/bicubic_lpips" in evals[-1]
    assert list((tmp / "run" / "images").glob("samples_*.png"))


def test_encode_writes_the_models_codes(vqgan_run):
    from teco_jax import encode
    from teco_jax.data import pipeline, tfds_read

    tmp, _, written = vqgan_run
    assert encode.main(["--vqgan", str(tmp / "run"), "--data", str(tmp / "tfds"), "--out", str(tmp / "codes"),
                        "--chunk", "3"]) == 0
    meta, sources = tfds_read.load(tmp / "codes")
    assert (meta.frame_feature, meta.frame_shape, meta.vocab_size, meta.num_actions) == ("codes", (16, 16), 16, 6)
    assert meta.num_examples == {"train": 8, "test": 4} and meta.vqgan.endswith("run")
    vqgan, _ = encode.load_vqgan(tmp / "run")
    for i, ref in enumerate(written["test"]):
        got = sources["test"][i]
        want = np.asarray(vqgan.encode(to_float(jnp.asarray(ref["video"])))["codes"])
        np.testing.assert_array_equal(got["codes"], want)
        np.testing.assert_array_equal(got["actions"], ref["actions"])
        np.testing.assert_array_equal(got["pose"], ref["pose"])
    ds, _ = pipeline.make_dataset(tmp / "codes", "train", seq_len=4, batch_size=2)
    assert next(iter(ds))["codes"].shape == (2, 4, 16, 16)
    # the same from the episode files directly
    assert encode.main(["--vqgan", str(tmp / "run"), "--data", str(tmp / "src"), "--out", str(tmp / "codes2")]) == 0
    np.testing.assert_array_equal(tfds_read.load(tmp / "codes2")[1]["test"][0]["codes"], sources["test"][0]["codes"])


def test_a_teco_embedding_size_that_contradicts_its_vqgan_is_a_one_line_error(vqgan_run):
    """TECO's vq_embed_dim is checked against the VQ-GAN it reads (embeddings of size 8 here) before any
    compile."""
    from teco_jax.errors import UserError
    from teco_jax.tasks.teco import TECOTask

    tmp, _, _ = vqgan_run
    task = TECOTask(teco_config(vqgan_dir=str(tmp / "run"), vq_vocab=16, vq_embed_dim=5))
    with pytest.raises(UserError, match=r"has 16 codes of dimension 8, but config.model expects vq_vocab=16, "
                                        r"vq_embed_dim=5") as e:
        task.constants()
    assert "\n" not in str(e.value)
