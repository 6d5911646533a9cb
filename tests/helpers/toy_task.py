"""The toy task (a tiny conv autoencoder, registered as "toy"), so the training machinery is tested
on its own. Defined in teco_jax/testing.py; this file is also a config file for the training CLI:

    python -m teco_jax.train --config=tests/helpers/toy_task.py:DATA_DIR --workdir=...
"""

from teco_jax.testing import ToyAutoencoder, ToyTask, toy_config

__all__ = ["ToyAutoencoder", "ToyTask", "toy_config", "get_config"]


def get_config(arg=""):
    """So the CLI can load this file: `--config tests/helpers/toy_task.py:DATA_DIR`."""
    return toy_config(arg)
