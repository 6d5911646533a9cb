"""teco_jax: TECO world models for long video in JAX/Flax."""
