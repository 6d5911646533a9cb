"""What several test files share, imported as `from tests.helpers.X import ...`.

Test modules never import one another: whatever two of them use lives here, one module per
concept, and shared pytest fixtures live in a conftest.py (tests/conftest.py), where pytest
finds them without an import.

- episodes: synthetic episode files (make_episode, write_episodes) and the small TFDS
  datasets of the sharding checks (write_tiny_dataset)
- configs: the tiny TECO, VQ-GAN and latent-diffusion configs (and their window T, code
  vocabulary V, the grid maze's model.memory MEMORY)
- runs: untrained checkpoints written from numpy-drawn parameters, and small datasets built
  around them
- toy_task: the toy autoencoder task; also a config file for the training CLI
  (`--config=tests/helpers/toy_task.py:DATA_DIR`)

What scripts/ also needs (the toy task, tiny TECO / VQ-GAN configs, synthetic data) is defined
once in teco_jax/testing.py and re-exported here.
"""
