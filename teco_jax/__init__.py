"""teco_jax: TECO world models for long video in JAX/Flax.

Importing the package itself loads nothing heavy, so light modules (`teco_jax.revisit`) serve
the dataset generators without JAX; the models' flax settings live in `teco_jax.nn`.
"""
