"""Spatial MaskGIT prior p(z_t | h_t) over one frame's TECO code grid.

Dimension keys: B batch (any leading dims), N = H*W flattened grid positions, H/W grid,
C conditioning channels (`cond_dim`), K vocabulary (TECO codebook size), E token
embedding dim (`token_dim`), D transformer width.

Model: embed the tokens with a (K + 1, E) table (index K = [MASK]), concatenate the
conditioning per position, a bidirectional `Transformer` (input dense E + C -> D, learned
2-D position embeddings added after it), then dense(D -> E) + GELU + LayerNorm and logits
tied to the embedding table: x @ embedding[:K].T + bias_K.

Training (`MaskGIT.loss`): per example draw r ~ U[0, 1), mask num_masked(r, N) =
max(1, ceil(cos(pi/2 r) N)) positions chosen uniformly at random, cross-entropy on the
masked positions only.

Sampling (fixed shapes, lax loops, jit-compilable):
- `sample_draft_revise`: draft-and-revise (Lee et al. 2022). Partitions are drawn per
  example (every example gets its own random partition into groups of sizes differing by
  at most one).
- `sample_confidence`: MaskGIT's confidence schedule (Chang et al. 2022).
Both reveal every position and return tokens_BN (and with return_state=True the final
`SampleState`, whose num_calls counts model calls and masked_counts_BS records the number
of [MASK] ids left after each step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from teco_jax.losses import cross_entropy_per_position
from teco_jax.nn.layers import dense, layer_norm
from teco_jax.nn.transformer import Transformer, transformer_param_count


# ----------------------------------------------------------------- schedules (pure)

def cosine_schedule(r) -> jax.Array:
    """Fraction of tokens masked at mask ratio parameter r in [0, 1]: cos(pi/2 r)."""
    return jnp.cos(0.5 * jnp.pi * jnp.asarray(r, jnp.float32))


def num_masked(r, n: int) -> jax.Array:
    """max(1, ceil(cos(pi/2 r) n)), int32, elementwise over r (training mask counts)."""
    return jnp.maximum(1, jnp.ceil(cosine_schedule(r) * n)).astype(jnp.int32)


def confidence_schedule(step, steps: int, n: int, unknown) -> jax.Array:
    """MaskGIT's count of tokens left masked after sampling step `step` (0-based) of `steps`,
    with `unknown` (B,) tokens masked before the step: floor(cos(pi/2 (step + 1) / steps) n),
    clamped to [1, unknown - 1] (every step reveals at least one token and keeps one), and 0
    after the last step (MaskGIT returns the last step's samples everywhere)."""
    step = jnp.asarray(step)
    # floor(n cos(...)) per step, in float64 on the host (steps and n are static): float32 cos
    # would put exact cases such as n cos(pi/3) = n/2 one below.
    table = np.floor(n * np.cos(np.pi / 2 * np.arange(1, steps + 1) / steps) + 1e-9).astype(np.int32)
    count = jnp.asarray(table)[jnp.clip(step, 0, steps - 1)]
    count = jnp.maximum(1, jnp.minimum(jnp.asarray(unknown, jnp.int32) - 1, count))
    return jnp.where(step + 1 >= steps, 0, count)


def choice_noise_scale(step, steps: int, choice_temperature: float) -> jax.Array:
    """MaskGIT's scale of the Gumbel noise on the confidences at step `step` (0-based) of `steps`:
    choice_temperature * (1 - (step + 1) / steps), annealed to 0 at the last step."""
    return choice_temperature * (1.0 - (jnp.asarray(step, jnp.float32) + 1.0) / steps)


def ascending_ranks(scores: jax.Array) -> jax.Array:
    """Ascending rank (0 = smallest) of every entry along the last axis (ties broken by position)."""
    return jnp.argsort(jnp.argsort(scores, axis=-1, stable=True), axis=-1, stable=True).astype(jnp.int32)


def random_ranks(key: jax.Array, shape) -> jax.Array:
    """A uniformly random permutation rank (0..N-1) of every position along the last axis."""
    return ascending_ranks(jax.random.uniform(key, shape))


def random_partition(key: jax.Array, shape, num_groups: int) -> jax.Array:
    """Group ids in [0, num_groups) along the last axis (size N), a uniformly random partition
    into groups of sizes floor/ceil(N / num_groups), independent per leading index."""
    n = shape[-1]
    return (random_ranks(key, shape) * num_groups) // n


def mask_tokens(key: jax.Array, tokens_BN: jax.Array, n_total: int | None = None, *,
                mask_id: int) -> tuple[jax.Array, jax.Array]:
    """Mask exactly num_masked(r, n_total) uniformly random positions per example (r ~ U[0, 1)
    per example; n_total defaults to N, the last axis). Returns (masked tokens, mask_BN bool)."""
    n = tokens_BN.shape[-1]
    n_total = n if n_total is None else n_total
    if n_total > n:
        raise ValueError(f"n_total {n_total} exceeds the {n} positions")
    key_r, key_p = jax.random.split(key)
    count_B = num_masked(jax.random.uniform(key_r, tokens_BN.shape[:-1]), n_total)
    mask_BN = random_ranks(key_p, tokens_BN.shape) < count_B[..., None]
    return jnp.where(mask_BN, mask_id, tokens_BN), mask_BN


# ----------------------------------------------------------------- model

@struct.dataclass
class SampleState:
    """tokens_BN (int32, MASK id = K where unknown), the PRNG key, the number of model calls
    made, and the number of [MASK] ids left after each step (B, steps)."""

    tokens: jax.Array
    key: jax.Array
    num_calls: jax.Array
    masked_counts: jax.Array


class MaskGIT(nnx.Module):
    """tokens_BN (int, mask id K allowed), cond_BNC -> logits_BNK (float32).

    Also accepts grid shapes: tokens (..., H, W) with cond (..., H, W, C) give logits (..., H, W, K).
    """

    def __init__(self, vocab_size: int, grid: tuple[int, int] = (8, 8), cond_dim: int = 64,
                 token_dim: int = 256, width: int = 512, mlp_dim: int = 2048, num_heads: int = 8,
                 num_layers: int = 8, *, rngs: nnx.Rngs, dtype=None, remat: bool = False):
        self.vocab_size, self.grid, self.cond_dim, self.token_dim = vocab_size, tuple(grid), cond_dim, token_dim
        self.mask_id = vocab_size
        gh, gw = self.grid
        init = jax.nn.initializers.normal(0.02)
        self.token_embedding = nnx.Param(init(rngs.params(), (vocab_size + 1, token_dim), jnp.float32),
                                         out_sharding=("vocab", None))
        self.transformer = Transformer(token_dim + cond_dim, width, mlp_dim, num_heads, num_layers,
                                       rngs=rngs, dtype=dtype, remat=remat)
        self.pos_h = nnx.Param(init(rngs.params(), (gh, width // 2), jnp.float32), out_sharding=(None, "embed"))
        self.pos_w = nnx.Param(init(rngs.params(), (gw, width - width // 2), jnp.float32),
                               out_sharding=(None, "embed"))
        self.head_proj = dense(width, token_dim, ("embed", None), rngs=rngs, dtype=dtype)
        self.head_norm = layer_norm(token_dim, rngs=rngs, dtype=dtype)
        self.logit_bias = nnx.Param(jnp.zeros((vocab_size,), jnp.float32), out_sharding=("vocab",))
        self.dtype = dtype

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def positions(self) -> jax.Array:
        """The learned 2-D position embeddings, (N, D): [pos_h[i], pos_w[j]] at position i*W + j."""
        gh, gw = self.grid
        ph = jnp.broadcast_to(self.pos_h[...][:, None, :], (gh, gw, self.pos_h.shape[-1]))
        pw = jnp.broadcast_to(self.pos_w[...][None, :, :], (gh, gw, self.pos_w.shape[-1]))
        return jnp.concatenate([ph, pw], axis=-1).reshape(gh * gw, -1)

    def _flat(self, tokens: jax.Array, cond: jax.Array):
        """Flatten leading dims and a trailing (H, W) grid: -> (B', N), (B', N, C), output shape fn."""
        n = self.num_tokens
        if tokens.shape[-1] == n and cond.shape[-2] == n:
            lead, grid_shape = tokens.shape[:-1], (n,)
        elif tuple(tokens.shape[-2:]) == self.grid and tuple(cond.shape[-3:-1]) == self.grid:
            lead, grid_shape = tokens.shape[:-2], self.grid
        else:
            raise ValueError(f"tokens {tokens.shape} / cond {cond.shape} do not match the grid {self.grid}")
        tok = tokens.reshape(-1, n)
        cnd = jnp.broadcast_to(cond.reshape(*cond.shape[:-(len(grid_shape) + 1)], n, cond.shape[-1]),
                               lead + (n, cond.shape[-1])).reshape(-1, n, cond.shape[-1])
        return tok, cnd, (lambda y: y.reshape(*lead, *grid_shape, *y.shape[2:]))

    def _logits(self, tokens_BN: jax.Array, cond_BNC: jax.Array) -> jax.Array:
        emb = self.token_embedding[...]
        x = jnp.take(emb, tokens_BN, axis=0)
        x = jnp.concatenate([x, cond_BNC.astype(x.dtype)], axis=-1)
        h = self.transformer(x, None, self.positions())
        h = self.head_norm(nnx.gelu(self.head_proj(h)))
        logits = jnp.einsum("bne,ke->bnk", h.astype(jnp.float32), emb[: self.vocab_size].astype(jnp.float32))
        return logits + self.logit_bias[...]

    def __call__(self, tokens: jax.Array, cond: jax.Array) -> jax.Array:
        tok, cnd, unflat = self._flat(tokens, cond)
        return unflat(self._logits(tok, cnd))

    # ------------------------------------------------------------- training

    def loss(self, tokens: jax.Array, cond: jax.Array, key: jax.Array,
             label_smoothing: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Masked-token cross-entropy (mean over masked positions), with metrics
        {"loss", "accuracy" (on masked tokens), "mask_fraction"}. Any leading dims."""
        tok, cnd, _ = self._flat(tokens, cond)
        masked, mask = mask_tokens(key, tok, mask_id=self.mask_id)
        ce_sum, correct_sum = self.masked_loss_sums(tok, masked, mask, cnd, label_smoothing)
        count = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
        loss = ce_sum / count
        return loss, {"loss": loss, "accuracy": correct_sum / count, "mask_fraction": jnp.mean(mask)}

    def masked_loss_sums(self, tokens_BN: jax.Array, masked_BN: jax.Array, mask_BN: jax.Array,
                         cond_BNC: jax.Array, label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
        """Sums over the masked positions of the cross-entropy and of the correct argmaxes,
        given the masked input (`mask_tokens`): a batch split into parts sums to the whole."""
        logits = self._logits(masked_BN, cond_BNC)
        maskf = mask_BN.astype(jnp.float32)
        ce = cross_entropy_per_position(logits, tokens_BN, label_smoothing)
        correct = (jnp.argmax(logits, axis=-1) == tokens_BN).astype(jnp.float32)
        return jnp.sum(ce * maskf), jnp.sum(correct * maskf)

    # ------------------------------------------------------------- sampling

    def _sample_logits(self, key: jax.Array, logits: jax.Array, temperature: float) -> jax.Array:
        if isinstance(temperature, (int, float)) and temperature == 0:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)

    def init_sample_state(self, batch: int, key: jax.Array, steps: int) -> SampleState:
        """All positions [MASK], no calls yet; masked_counts has room for `steps` steps."""
        return SampleState(tokens=jnp.full((batch, self.num_tokens), self.mask_id, jnp.int32), key=key,
                           num_calls=jnp.zeros((), jnp.int32),
                           masked_counts=jnp.zeros((batch, steps), jnp.int32))

    def _count_masked(self, state: SampleState, step) -> jax.Array:
        count = jnp.sum(state.tokens == self.mask_id, axis=-1).astype(jnp.int32)
        return state.masked_counts.at[:, step].set(count)

    def sample_draft_revise(self, cond: jax.Array, key: jax.Array, draft_steps: int = 8, revise_steps: int = 8,
                            revise_rounds: int = 2, temperature: float = 1.0, return_state: bool = False):
        """Draft-and-revise sampling; exactly draft_steps + revise_rounds * revise_steps model calls.

        Draft: a random partition (per example) of the N positions into `draft_steps` groups;
        for each group in turn, run the model on the current tokens ([MASK] where unfilled) and
        sample the group from softmax(logits / temperature). Revise: `revise_rounds` rounds,
        each with a fresh per-example partition into `revise_steps` groups; for each group
        re-mask it, run the model and resample it. temperature 0 (a Python number) = argmax.
        cond: (B, N, C) or (B, H, W, C). Returns int32 tokens shaped like cond without
        its channels (and the final SampleState, flattened to (B', N)).
        """
        _, cnd, unflat = self._flat(jnp.zeros(cond.shape[:-1], jnp.int32), cond)
        b, n = cnd.shape[0], self.num_tokens
        total = draft_steps + revise_rounds * revise_steps
        key, key_draft, key_rev = jax.random.split(key, 3)
        draft_groups = random_partition(key_draft, (b, n), draft_steps)
        revise_groups = (random_partition(key_rev, (revise_rounds, b, n), revise_steps) if revise_rounds
                         else jnp.zeros((1, b, n), jnp.int32))

        def schedule(i):  # step i -> (the positions to (re)sample) bool (B, N)
            j = jnp.maximum(i - draft_steps, 0)
            rev = revise_groups[jnp.minimum(j // max(revise_steps, 1), revise_groups.shape[0] - 1)]
            return jnp.where(i < draft_steps, draft_groups == i, rev == j % max(revise_steps, 1))

        def body(i, state: SampleState) -> SampleState:
            sel = schedule(i)
            tokens_in = jnp.where(sel, self.mask_id, state.tokens)
            step_key, next_key = jax.random.split(state.key)
            sampled = self._sample_logits(step_key, self._logits(tokens_in, cnd), temperature)
            state = state.replace(tokens=jnp.where(sel, sampled, state.tokens), key=next_key,
                                  num_calls=state.num_calls + 1)
            return state.replace(masked_counts=self._count_masked(state, i))

        state = jax.lax.fori_loop(0, total, body, self.init_sample_state(b, key, total))
        tokens = unflat(state.tokens)
        return (tokens, state) if return_state else tokens

    def sample_confidence(self, cond: jax.Array, key: jax.Array, steps: int = 8, temperature: float = 1.0,
                          choice_temperature: float = 4.5, return_state: bool = False):
        """MaskGIT's confidence-based schedule (Chang et al. 2022), `steps` model calls.

        Start all masked; at step s sample every masked position from softmax(logits /
        temperature); its confidence is log p(sampled) + choice_noise_scale(s) * gumbel, with
        the noise annealed from choice_temperature (MaskGIT's default 4.5) to 0; the
        confidence_schedule(s) least confident stay masked. Revealed tokens are never re-masked.
        cond: (B, N, C) or (B, H, W, C). Returns int32 tokens shaped like cond without
        its channels (and the final SampleState, flattened to (B', N)).
        """
        _, cnd, unflat = self._flat(jnp.zeros(cond.shape[:-1], jnp.int32), cond)
        body = lambda s, state: self.confidence_step(state, cnd, s, steps, temperature, choice_temperature)  # noqa: E731
        state = jax.lax.fori_loop(0, steps, body, self.init_sample_state(cnd.shape[0], key, steps))
        tokens = unflat(state.tokens)
        return (tokens, state) if return_state else tokens

    def confidence_step(self, state: SampleState, cond_BNC: jax.Array, s, steps: int, temperature: float = 1.0,
                        choice_temperature: float = 4.5) -> SampleState:
        """One step s (0-based, may be traced) of `sample_confidence` on flat (B, N) state / (B, N, C) cond."""
        key_sample, key_noise, next_key = jax.random.split(state.key, 3)
        logits = self._logits(state.tokens, cond_BNC)
        sampled = self._sample_logits(key_sample, logits, temperature)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), sampled[..., None], axis=-1)[..., 0]
        noise = jax.random.gumbel(key_noise, logp.shape) * choice_noise_scale(s, steps, choice_temperature)
        unknown = state.tokens == self.mask_id
        # revealed positions get +inf confidence, so they are never among the least confident
        conf = jnp.where(unknown, jnp.nan_to_num(logp + noise, neginf=-1e30, posinf=1e30), jnp.inf)
        keep = confidence_schedule(s, steps, self.num_tokens, jnp.sum(unknown, axis=-1))
        keep_masked = ascending_ranks(conf) < keep[:, None]
        tokens = jnp.where(keep_masked, self.mask_id, jnp.where(unknown, sampled, state.tokens))
        state = state.replace(tokens=tokens, key=next_key, num_calls=state.num_calls + 1)
        return state.replace(masked_counts=self._count_masked(state, s))

def maskgit_param_count(vocab_size: int, grid: tuple[int, int], cond_dim: int, token_dim: int, width: int,
                        mlp_dim: int, num_layers: int) -> int:
    """Analytic parameter count of `MaskGIT`."""
    return ((vocab_size + 1) * token_dim + transformer_param_count(token_dim + cond_dim, width, mlp_dim, num_layers)
            + grid[0] * (width // 2) + grid[1] * (width - width // 2)
            + (width * token_dim + token_dim) + 2 * token_dim + vocab_size)


__all__ = ["MaskGIT", "SampleState", "mask_tokens", "num_masked", "cosine_schedule", "confidence_schedule",
           "choice_noise_scale", "random_partition", "random_ranks", "ascending_ranks", "maskgit_param_count"]
