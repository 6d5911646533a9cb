"""Synthetic episodes: root/{split}/ep_XXXX.npz files, and the sharding checks' tiny TFDS datasets.

Defined in teco_jax/testing.py, which scripts/multihost_check.py uses too.
"""

from teco_jax.testing import make_episode, write_episodes, write_tiny_dataset

__all__ = ["make_episode", "write_episodes", "write_tiny_dataset"]
