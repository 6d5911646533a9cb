"""Shared fixtures: tiny episode datasets the tests make themselves.

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

import numpy as np
import pytest


def make_episode(rng: np.random.Generator, length: int = 12, size: int = 8, num_actions: int = 6) -> dict:
    return {
        "video": rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        "actions": rng.integers(0, num_actions, (length,), dtype=np.int32),
        "pose": rng.normal(size=(length, 3)).astype(np.float32),
        "layout": rng.integers(0, 2, (5, 5), dtype=np.uint8),
    }


def write_episodes(root: Path, counts: dict[str, int], seed: int = 0, **kw) -> dict[str, list[dict]]:
    """Write root/{split}/ep_XXXX.npz episodes; returns them in file order."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        written[split] = []
        for i in range(n):
            ep = make_episode(rng, **kw)
            np.savez(root / split / f"ep_{i:04d}.npz", **ep)
            written[split].append(ep)
    return written


@pytest.fixture(scope="session")
def episode_dir(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("episodes")
    return root, write_episodes(root, {"train": 12, "test": 4})


@pytest.fixture(scope="session")
def tfds_dir(episode_dir, tmp_path_factory) -> Path:
    from teco_jax.data import tfds_io

    out = tmp_path_factory.mktemp("tfds")
    tfds_io.build_from_episodes(episode_dir[0], out, name="toy", num_actions=6)
    return out


def pytest_sessionfinish(session):
    """The controller (or a run without xdist) removes the run's compilation cache."""
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
