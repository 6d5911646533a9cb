"""How fast does a small transformer learn to retrieve repeated views? A probe without TECO.

    python bench/retrieval_from_codes.py data/grid_codes --steps 1500 --variant shift --lr 1e-3

A frame transformer of TECO's `:cpu` size (2 layers, width 128, 4 heads, one token per frame)
reads the VQ-GAN codes of frame t-1 and action a_t at position t and predicts the 64 codes of
frame t. With `--variant shift` position t also adds (separately embedded) frame t-2 and action
a_{t-1}: the previous token (a token shift; measured in docs/cpu_world.md and not kept in TECO).
(A third variant that passed the tokens through a built-in induction head, TECO's former
`model.recall`, is described with its figures in docs/cpu_world.md, "Recall".)
Every 250 steps it prints the accuracy on 32 test clips for frames that are new, that repeat
a frame of the last 16, or that repeat only an older one (as bench/teco_retrieval.py groups
them), and the swap control of bench/teco_retrieval.py. A transformer that retrieves scores
near 1 on the repeats, and loses far more on frames "seen only" in a swapped-out first half
than on new frames. docs/cpu_world.md,
"Token shift", has the figures.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from teco_jax.data import tfds_read
from teco_jax.nn.transformer import Transformer, causal_mask, sinusoidal_positions

NEAR = 16


def load(source, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """codes (B, T, P) and actions (B, T) of the first `count` clips."""
    count = len(source) if count is None else min(count, len(source))
    codes = np.stack([np.asarray(source[i]["codes"], np.int32) for i in range(count)])
    actions = np.stack([np.asarray(source[i]["actions"], np.int32) for i in range(count)])
    return codes.reshape(codes.shape[:2] + (-1,)), actions


def repeat_groups(codes_BTP: np.ndarray) -> np.ndarray:
    """(B, T) int: 0 new frame, 1 repeats one of the last NEAR frames, 2 repeats only an older one."""
    groups = np.zeros(codes_BTP.shape[:2], np.int32)
    for b, clip in enumerate(codes_BTP):
        for t in range(1, len(clip)):
            earlier = np.flatnonzero((clip[:t] == clip[t]).all(axis=1))
            if len(earlier):
                groups[b, t] = 1 if t - earlier.max() <= NEAR else 2
    return groups


def control_masks(codes_BTP: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) bool masks of the swap control, over frames >= NEAR after the middle: frames equal
    to a first-half frame and to none since ("seen only in the first half"), and frames equal to
    no earlier frame ("new")."""
    half = codes_BTP.shape[1] // 2
    recall = np.zeros(codes_BTP.shape[:2], bool)
    unseen = np.zeros(codes_BTP.shape[:2], bool)
    for b, clip in enumerate(codes_BTP):
        for t in range(half + NEAR, len(clip)):
            first = (clip[:half] == clip[t]).all(axis=1).any()
            later = (clip[half:t] == clip[t]).all(axis=1).any()
            recall[b, t], unseen[b, t] = first and not later, not first and not later
    return recall, unseen


class FrameTransformer(nnx.Module):
    """codes_BTP, actions_BT -> logits_BTPV for frame t from frames < t and actions <= t."""

    def __init__(self, positions: int, vocab: int, num_actions: int, width: int, layers: int, variant: str, *,
                 rngs: nnx.Rngs):
        shift = variant == "shift"
        self.positions, self.vocab, self.width = positions, vocab, width
        self.frame = nnx.Embed(positions * vocab, width, rngs=rngs)  # one table per code position
        self.action = nnx.Embed(num_actions + 1, width, rngs=rngs)
        self.prev_frame = nnx.Embed(positions * vocab, width, rngs=rngs) if shift else None
        self.prev_action = nnx.Embed(num_actions + 1, width, rngs=rngs) if shift else None
        self.start = nnx.Param(0.02 * jax.random.normal(rngs.params(), (width,)))
        self.transformer = Transformer(width, width, 4 * width, 4, layers, rngs=rngs, out_dim=positions * vocab)

    def _embed(self, table: nnx.Embed, codes_BTP: jax.Array) -> jax.Array:
        return table(codes_BTP + jnp.arange(self.positions) * self.vocab).sum(-2) / np.sqrt(self.positions)

    def __call__(self, codes_BTP: jax.Array, actions_BT: jax.Array) -> jax.Array:
        b, t = actions_BT.shape
        x = self._embed(self.frame, codes_BTP[:, :-1]) + self.action(actions_BT[:, 1:])
        x = jnp.concatenate([jnp.broadcast_to(self.start[...], (b, 1, self.width)), x], axis=1)
        if self.prev_frame is not None:
            prev = self._embed(self.prev_frame, codes_BTP[:, :-2]) + self.prev_action(actions_BT[:, 1:-1])
            x = x + jnp.concatenate([jnp.zeros((b, 2, self.width)), prev], axis=1)
        y = self.transformer(x, mask=causal_mask(t), pos_BLD=sinusoidal_positions(t, self.width)[None])
        return y.reshape(b, t, self.positions, self.vocab)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="a code dataset (teco_jax.encode)")
    p.add_argument("--test_data", default=None, help="score on this code dataset's test clips instead "
                   "(same VQ-GAN; e.g. train on a small maze, test on the 7x7 one)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (scores printed every 250)")
    p.add_argument("--variant", choices=("plain", "shift"), default="shift",
                   help="plain: frame t-1 and action a_t at position t; shift: also frame t-2 and a_{t-1} "
                        "(a token shift)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup 200 steps, cosine to lr/10)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers")
    p.add_argument("--width", type=int, default=128, help="transformer width (4 heads, MLP 4x)")
    p.add_argument("--batch", type=int, default=8, help="training clips per step")
    args = p.parse_args()
    for name in ("steps", "layers", "width", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    _, splits = tfds_read.load(args.data)
    train_codes, train_actions = load(splits["train"])
    test_codes, test_actions = load((tfds_read.load(args.test_data)[1] if args.test_data else splits)["test"], 32)
    groups = repeat_groups(test_codes)[:, 1:]
    # The control (as in bench/teco_retrieval.py): the first half of each clip swapped for the
    # next clip's; frames >= NEAR after the middle that repeat a view seen only in the first half
    # lose its earlier occurrence, new frames only the episode's colours and layout.
    half = test_codes.shape[1] // 2
    swapped_codes, swapped_actions = test_codes.copy(), test_actions.copy()
    swapped_codes[:, :half], swapped_actions[:, :half] = (np.roll(x[:, :half], 1, axis=0)
                                                          for x in (test_codes, test_actions))
    recall, unseen = control_masks(test_codes)
    vocab = int(max(train_codes.max(), test_codes.max())) + 1
    num_actions = int(max(train_actions.max(), test_actions.max())) + 1
    print(f"{len(train_codes)} training clips of {train_codes.shape[1]} frames x {train_codes.shape[2]} codes; "
          f"test frames new / repeat within {NEAR} / repeat older: {[int((groups == k).sum()) for k in range(3)]}")

    model = FrameTransformer(train_codes.shape[2], vocab, num_actions, args.width, args.layers,
                             args.variant, rngs=nnx.Rngs(0))
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(200, args.steps // 2), args.steps, args.lr / 10)
    opt = nnx.Optimizer(model, optax.adamw(schedule, b2=0.95, weight_decay=1e-5), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, codes, actions):
        def loss_fn(model):
            logits = model(codes, actions)[:, 1:]
            return optax.softmax_cross_entropy_with_integer_labels(logits, codes[:, 1:]).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    @nnx.jit
    def accuracy(model, codes, actions):
        return (jnp.argmax(model(codes, actions), axis=-1) == codes).mean(-1)

    rng, start = np.random.default_rng(0), time.time()
    for step in range(1, args.steps + 1):
        i = rng.integers(0, len(train_codes), args.batch)
        loss = train_step(model, opt, jnp.asarray(train_codes[i]), jnp.asarray(train_actions[i]))
        if step % 250 == 0 or step == args.steps:
            def score(codes, actions):
                return np.concatenate([np.asarray(accuracy(model, jnp.asarray(codes[j:j + 8]), jnp.asarray(actions[j:j + 8])))
                                       for j in range(0, len(codes), 8)])
            acc, acc_swapped = score(test_codes, test_actions), score(swapped_codes, swapped_actions)
            new, near, far = (acc[:, 1:][groups == k].mean() for k in range(3))
            print(f"step {step:5d}  loss {float(loss):.3f}  accuracy new {new:.3f}  repeat within {NEAR} {near:.3f}  "
                  f"repeat older {far:.3f}  | first half swapped: seen only there {acc[recall].mean():.3f} -> "
                  f"{acc_swapped[recall].mean():.3f}, new {acc[unseen].mean():.3f} -> {acc_swapped[unseen].mean():.3f}"
                  f"  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
