"""teco_jax: TECO world models for long video in JAX/Flax."""

import flax

# Parameters carry logical sharding names as metadata only; they are placed on devices by
# jitting the model's init with out_shardings (see teco_jax/parallel.py), so models can be
# built anywhere, with or without a mesh.
flax.config.update("flax_always_shard_variable", False)
