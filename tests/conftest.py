"""Shared fixtures: tiny episode datasets and untrained runs the tests make themselves.

The helpers these fixtures are built from (and that tests call directly) are in tests/helpers/;
test modules import those, never one another.

The suite's models are tiny, so its time goes to XLA compiling them, not to running them.
Before anything imports JAX:
- XLA is told to compile quickly (less optimised code, the same numbers up to float
  reassociation): the slowest test ran in 148 s instead of 237 s. Set TECO_TEST_FULL_OPT=1 to
  test with XLA's default optimisation instead.
- JAX's persistent compilation cache points at a directory made for this run and shared by
  its pytest-xdist workers and the CLIs the tests start, so a program compiled once (the same
  tiny TECO in many tests) is loaded, not compiled again. It starts empty every run, so test
  times stay those of a fresh machine; it is removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if not os.environ.get("TECO_TEST_FULL_OPT"):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One cache per run: the first process to load this file (the xdist controller, or the only
# process) makes it; the workers and CLIs it starts inherit the variable. A cache the user
# set is used as it is and kept.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="teco_jax_test_xla_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest


@pytest.fixture(scope="session")
def episode_dir(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    from tests.helpers.episodes import write_episodes

    root = tmp_path_factory.mktemp("episodes")
    return root, write_episodes(root, {"train": 12, "test": 4})


@pytest.fixture(scope="session")
def tfds_dir(episode_dir, tmp_path_factory) -> Path:
    from teco_jax.data import tfds_write

    out = tmp_path_factory.mktemp("tfds")
    tfds_write.build_from_episodes(episode_dir[0], out, name="toy", num_actions=6)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Untrained VQ-GAN and TECO runs (tests/helpers/runs.world_model_runs), once per test module
    that asks for them: (the directory, its 3 test episodes)."""
    from tests.helpers.runs import world_model_runs

    return world_model_runs(tmp_path_factory.mktemp("world_model"))


@pytest.fixture(scope="module")
def wm(runs):
    """The WorldModel of `runs`' TECO."""
    from teco_jax.world_model import WorldModel

    return WorldModel.load(runs[0] / "teco")


def pytest_sessionfinish(session):
    """The controller (or a run without xdist) removes the run's compilation cache."""
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
