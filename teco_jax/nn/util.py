"""Small helpers for modules."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def count_params(module_or_state: Any) -> int:
    """Number of parameter (nnx.Param) elements in a module, a State, or any pytree of arrays.

    Works on abstract models from `nnx.eval_shape` (only shapes are read, nothing is allocated).
    For a State, only its nnx.Param entries are counted when it holds Variables.
    """
    tree = module_or_state
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree, nnx.Param)
    elif isinstance(tree, nnx.State):
        tree = nnx.filter_state(tree, nnx.Param) if _has_variables(tree) else tree
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def _has_variables(state: nnx.State) -> bool:
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    return any(is_var(v) for v in jax.tree.leaves(state, is_leaf=is_var))


def shift_right(x_BT: jax.Array) -> jax.Array:
    """x moved one step later along axis 1 (time), zeros at t = 0: out[:, t] = x[:, t - 1]."""
    return jnp.concatenate([jnp.zeros_like(x_BT[:, :1]), x_BT[:, :-1]], axis=1)


@nnx.remat
def take_frames(x_BT: jax.Array, idx_Bn: jax.Array) -> jax.Array:
    """x[b, idx[b, i]] for every b, i: (B, T, ...) -> (B, n, ...)."""
    return jnp.take_along_axis(x_BT, idx_Bn.reshape(idx_Bn.shape + (1,) * (x_BT.ndim - 2)), axis=1)


def _remat_apply(module: nnx.Module, *args):
    return module(*args)


def apply(module: nnx.Module, *args, remat: bool = False):
    """module(*args); with remat, its activations are recomputed in the backward pass instead of
    kept (the same numbers, less memory, more time)."""
    return _remat_apply(module, *args) if remat else module(*args)
