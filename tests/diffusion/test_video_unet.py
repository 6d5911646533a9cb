"""The factorized space-time denoiser: image-model equivalence at alpha = 1, sparse-causal attention,
zero-initialized temporal layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teco_jax.models import video_unet
from teco_jax.models.video_unet import SpatialAttention, VideoDenoiser
from tests.helpers.configs import diffusion_model_config as model_config

B, T, HW, C = 2, 5, 4, 4


def perturbed(model, scale=0.2, seed=1):
    """The model with noise added to every parameter except the alphas, so that the zero-initialized
    layers (motion-module output projections, temporal convs, conv_out) do something."""
    rng = np.random.default_rng(seed)
    params = nnx.state(model, nnx.Param)
    noisy = jax.tree.map(lambda p: p + scale * rng.normal(size=p.shape).astype(np.float32) if p.ndim else p, params)
    nnx.update(model, noisy)
    return model


def inputs(seed=0, frames=T):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, frames, HW, HW, C)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(B, frames, HW, HW, C)), jnp.float32)
    mask = jnp.asarray(np.arange(frames)[None] < np.array([[1], [2]]), jnp.float32)
    t = jnp.asarray([3, 77], jnp.int32)
    actions = jnp.asarray(rng.integers(0, 7, (B, frames)), jnp.int32)
    return x, t, ctx, mask, actions


@pytest.mark.slow
def test_alpha_one_is_the_image_model_frame_by_frame():
    model = perturbed(VideoDenoiser(model_config(), rngs=nnx.Rngs(0)))
    x, t, ctx, mask, actions = inputs()
    assert len(model.alpha_mixers()) == 16  # a temporal conv and a motion module in each of 8 blocks
    video_half = model(x, t, ctx, mask, actions)
    model.set_alphas(1.0)
    assert all(float(m.alpha) == 1.0 for m in model.alpha_mixers())
    video = model(x, t, ctx, mask, actions)
    # the image model: the same network without temporal layers, every frame a separate "video" of one frame
    flat = lambda a: a.reshape((B * T, 1) + a.shape[2:])
    image = model(flat(x), jnp.repeat(t, T), flat(ctx), mask.reshape(B * T, 1), actions.reshape(B * T, 1),
                  temporal=False).reshape(video.shape)
    # atol 1e-5: float reassociation differs across batch shapes; a leak across frames is orders larger
    np.testing.assert_allclose(np.asarray(video), np.asarray(image), rtol=0, atol=1e-5)
    # a single frame (its own video) gives the same result too: nothing crosses frames
    one = model(x[:, 2:3], t, ctx[:, 2:3], mask[:, 2:3], actions[:, 2:3], temporal=False)
    np.testing.assert_allclose(np.asarray(video[:, 2:3]), np.asarray(one), rtol=0, atol=1e-5)
    # with alpha < 1 the temporal layers do act, so the equality above is not trivial
    assert float(jnp.abs(video_half - video).max()) > 1e-3


def test_temporal_layers_start_as_the_identity():
    model = VideoDenoiser(model_config(), rngs=nnx.Rngs(0))
    seen = 0
    for _, mod in nnx.iter_graph(model):
        if isinstance(mod, (video_unet.MotionModule, video_unet.TemporalConv)):
            d = mod.proj_in.in_features if isinstance(mod, video_unet.MotionModule) else mod.conv1.in_features
            xi = jax.random.normal(jax.random.key(d), (B * T, HW, HW, d))
            np.testing.assert_array_equal(np.asarray(mod(xi, T)), np.asarray(xi))
            seen += 1
    assert seen == 16


def test_motion_module_mixes_frames_and_knows_their_order():
    mod = perturbed(video_unet.MotionModule(8, 2, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(0), (B * T, 2, 2, 8))
    y = mod(x, T)
    bump = jax.random.normal(jax.random.key(1), (B, 2, 2, 8))  # not a constant: LayerNorm would remove it
    x2 = x.reshape(B, T, 2, 2, 8).at[:, 4].add(bump).reshape(x.shape)
    assert float(jnp.abs(mod(x2, T).reshape(B, T, -1)[:, 0] - y.reshape(B, T, -1)[:, 0]).max()) > 1e-4
    # with identical frames the output still differs per frame: sinusoidal frame positions
    same = jnp.broadcast_to(x.reshape(B, T, 2, 2, 8)[:, :1], (B, T, 2, 2, 8)).reshape(x.shape)
    ys = mod(same, T).reshape(B, T, -1)
    assert float(jnp.abs(ys[:, 0] - ys[:, 1]).max()) > 1e-4


@pytest.mark.parametrize("frames", [6])
def test_sparse_causal_attention_sees_only_frames_0_and_t_minus_1(frames):
    layer = perturbed(SpatialAttention(8, 2, sparse_causal=True, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(0), (B, frames, 3, 3, 8))
    run = lambda a: np.asarray(layer(a.reshape((B * frames,) + a.shape[2:]), frames).reshape(a.shape))
    y = run(x)
    for j in range(frames):  # perturb frame j, see which outputs move
        bump = jax.random.normal(jax.random.key(100 + j), x.shape[2:])
        y2 = run(x.at[:, j].add(bump))
        for t in range(frames):
            moved = float(np.abs(y2[:, t] - y[:, t]).max())
            if j in (0, t - 1, t):
                assert moved > 1e-4, (j, t)
            else:
                assert moved == 0.0, (j, t)  # exactly independent


def test_sparse_causal_model_is_causal_and_anchored_on_frame_0():
    """In the whole network with sparse-causal attention and no temporal layers, information only flows
    forward in time: frame t's output depends on no later frame."""
    model = perturbed(VideoDenoiser(model_config(sparse_causal=True), rngs=nnx.Rngs(0)))
    x, t, ctx, mask, actions = inputs()
    y = model(x, t, ctx, mask, actions, temporal=False)
    y2 = model(x.at[:, 3:].add(1.0), t, ctx, mask, actions, temporal=False)
    np.testing.assert_array_equal(np.asarray(y[:, :3]), np.asarray(y2[:, :3]))
    assert float(jnp.abs(y2[:, 3:] - y[:, 3:]).max()) > 1e-4
    # and frame 0 reaches every frame
    y3 = model(x.at[:, 0].add(1.0), t, ctx, mask, actions, temporal=False)
    assert float(jnp.abs(y3[:, -1] - y[:, -1]).max()) > 1e-4


def test_conditioning_inputs_matter():
    model = perturbed(VideoDenoiser(model_config(), rngs=nnx.Rngs(0)))
    x, t, ctx, mask, actions = inputs()
    y = model(x, t, ctx, mask, actions)
    assert y.shape == x.shape
    # context is read only where the mask is 1
    np.testing.assert_allclose(model(x, t, ctx.at[:, 3:].add(5.0), mask, actions), y, atol=1e-6)
    assert float(jnp.abs(model(x, t, ctx.at[:, 0].add(5.0), mask, actions) - y).max()) > 1e-4
    # actions and timestep change the output
    assert float(jnp.abs(model(x, t, ctx, mask, (actions + 1) % 7) - y).max()) > 1e-4
    assert float(jnp.abs(model(x, t + 1, ctx, mask, actions) - y).max()) > 1e-5
