"""Shared neural-network layers (attention, transformer blocks, ResNet blocks, codebooks)."""

import flax

# Parameters carry logical sharding names as metadata only; they are placed on devices by
# jitting the model's init with out_shardings (see teco_jax/parallel.py), so models can be
# built anywhere, with or without a mesh. Every model is built from these layers, so this
# runs before any parameter is created.
flax.config.update("flax_always_shard_variable", False)
