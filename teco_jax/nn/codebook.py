"""Factorized, l2-normalized vector quantizer (Yu et al. 2021, "ViT-VQGAN"), shared by the
VQ-GAN (code_dim small, e.g. 8-32) and TECO's own latent codebook (code_dim 32).

Dimension keys: B batch (any leading dims), H/W spatial, C input channels (`in_dim`),
D code dimension (`code_dim`), K codebook size, N flattened positions.

Quantization happens in the normalized D-space: inputs are projected C -> D and
l2-normalized, codes are l2-normalized, the nearest code maximizes the cosine
(squared distance = 2 - 2 cos), and the straight-through estimator passes the gradient
of the quantized vector to the normalized input unchanged. The result is projected back
D -> C. The distance search and the loss are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from teco_jax.nn.layers import dense


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """x / ||x|| along `axis` (safe at 0: the gradient stays finite)."""
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True) + eps)


class L2Codebook(nnx.Module):
    """z_BHWC -> dict(z_q=BHWC, codes=BHW int32, loss, perplexity, usage).

    loss = mean((sg(z) - q)^2) + beta * mean((z - sg(q))^2), means over all elements of the
    normalized D-space vectors (the first term trains the codebook, the second, the
    commitment term, trains what feeds the codebook).
    """

    def __init__(self, in_dim: int, codebook_size: int, code_dim: int, *, beta: float = 0.25,
                 rngs: nnx.Rngs, dtype=None):
        self.in_dim, self.codebook_size, self.code_dim, self.beta = in_dim, codebook_size, code_dim, beta
        self.in_proj = dense(in_dim, code_dim, axes=("embed", None), rngs=rngs, dtype=dtype)
        self.codebook = nnx.Param(jax.random.normal(rngs.params(), (codebook_size, code_dim), jnp.float32),
                                  out_sharding=("vocab", None))
        self.out_proj = dense(code_dim, in_dim, axes=(None, "embed"), rngs=rngs, dtype=dtype)

    def normalized_codebook(self) -> jax.Array:
        """The l2-normalized code table, KD (float32)."""
        return l2_normalize(self.codebook[...].astype(jnp.float32))

    def code_vectors(self, codes: jax.Array) -> jax.Array:
        """codes_... int -> normalized code vectors ...D (float32)."""
        return jnp.take(self.normalized_codebook(), codes, axis=0)

    def lookup(self, codes: jax.Array) -> jax.Array:
        """codes_... int -> their embeddings ...C in the input space (through the output projection)."""
        return self.out_proj(self.code_vectors(codes))

    def __call__(self, z_BHWC: jax.Array) -> dict[str, jax.Array]:
        lead = z_BHWC.shape[:-1]
        z_BHWD = l2_normalize(self.in_proj(z_BHWC).astype(jnp.float32))
        e_KD = self.normalized_codebook()
        z_ND = z_BHWD.reshape(-1, self.code_dim)

        # squared distance between unit vectors = 2 - 2 cos; argmin distance = argmax cosine
        dist_NK = 2.0 - 2.0 * jnp.einsum("nd,kd->nk", z_ND, e_KD, precision=jax.lax.Precision.HIGHEST)
        codes_N = jnp.argmin(dist_NK, axis=-1).astype(jnp.int32)
        q_ND = jnp.take(e_KD, codes_N, axis=0)

        sg = jax.lax.stop_gradient
        codebook_loss = jnp.mean(jnp.square(sg(z_ND) - q_ND))
        commitment_loss = jnp.mean(jnp.square(z_ND - sg(q_ND)))
        loss = codebook_loss + self.beta * commitment_loss

        zq_ND = z_ND + sg(q_ND - z_ND)  # straight-through: forward q, backward identity to z
        z_q = self.out_proj(zq_ND.reshape(*lead, self.code_dim))

        counts_K = jnp.bincount(codes_N, length=self.codebook_size)
        p_K = counts_K / codes_N.shape[0]
        entropy = -jnp.sum(jnp.where(p_K > 0, p_K * jnp.log(jnp.where(p_K > 0, p_K, 1.0)), 0.0))
        return dict(z_q=z_q, codes=codes_N.reshape(lead), loss=loss, perplexity=jnp.exp(entropy),
                    usage=jnp.mean((counts_K > 0).astype(jnp.float32)))
