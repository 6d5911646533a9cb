"""Device meshes and declared sharding.

The mesh has three axes: `data` (pure data parallelism), `fsdp` (data parallelism
with parameters and optimizer state sharded across it) and `model` (Megatron-style
tensor parallelism). Parameters name their dimensions with logical axes (see
teco_jax/nn/layers.py); the config's `sharding_rules` map those names to mesh axes.
Nothing else in the code mentions devices.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both data-parallel axes

# Defaults: FSDP shards the model width, tensor parallelism splits heads, MLP units,
# vocabularies and conv output channels. Configs can override them.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("vocab", "model"),
    ("conv_in", "fsdp"),
    ("conv_out", "model"),
    ("norm", None),
)


def mesh_shape(sizes: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Resolve one -1 in (data, fsdp, model) to 'the rest of the devices'; check the product."""
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(MESH_AXES):
        raise ValueError(f"mesh needs {len(MESH_AXES)} sizes for {MESH_AXES}, got {sizes}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes) or num_devices % known:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} does not fit {num_devices} devices")
    sizes = [num_devices // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != num_devices:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices, "
                         f"but there are {num_devices}")
    return tuple(sizes)


def make_mesh(sizes: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, model) mesh over all devices of all processes (or `devices`)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(sizes, len(devices))
    if devices == list(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)


def rules_from_config(rules: Sequence[Sequence[Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Normalise config rules [(logical, mesh axis | [mesh axes] | None), ...]."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"a sharding rule is (logical axis, mesh axis or axes or None); got {rule!r}")
        logical, target = rule
        targets = target if isinstance(target, (list, tuple)) else (target,)
        for t in targets:
            if t is not None and t not in MESH_AXES:
                raise ValueError(f"sharding rule {rule!r} names unknown mesh axis {t!r} (axes: {MESH_AXES})")
        out.append((logical, tuple(target) if isinstance(target, (list, tuple)) else target))
    named = {logical for logical, _ in out}
    # A logical axis the config does not mention stays replicated.
    out.extend((logical, None) for logical, _ in DEFAULT_RULES if logical not in named)
    return tuple(out)


def _fit(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
    """Drop mesh axes from dimensions they do not divide (e.g. 3 RGB channels over 2 devices)
    and from all but the first dimension that names them (e.g. a conv_in x embed kernel
    when both map to fsdp)."""
    parts, used = [], set()
    for dim, part in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = part if isinstance(part, tuple) else (part,) if part else ()
        kept = tuple(n for n in names if dim % mesh.shape[n] == 0 and n not in used)
        used.update(kept)
        size = math.prod(mesh.shape[n] for n in kept)
        if size and dim % size:
            kept = ()
        parts.append(kept[0] if len(kept) == 1 else (kept or None))
    return P(*parts)


def state_shardings(abstract_state: Any, mesh: Mesh, rules) -> Any:
    """NamedShardings for an nnx State (or any pytree of nnx Variables) from logical names."""
    with nnx.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(abstract_state)

    def to_sharding(spec, leaf):
        shape = getattr(leaf, "shape", ())
        return NamedSharding(mesh, _fit(spec, tuple(shape), mesh))

    leaves_spec = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))
    leaves_abs = jax.tree.leaves(abstract_state)
    treedef = jax.tree.structure(abstract_state)
    return jax.tree.unflatten(treedef, [to_sharding(s, a) for s, a in zip(leaves_spec, leaves_abs)])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) axis split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def constrain_batch(x: jax.Array) -> jax.Array:
    """Inside a step traced under `jax.set_mesh(mesh)`: pin x to 'leading axis split over the
    data-parallel axes, everything else replicated'. A no-op without such a mesh or when the
    leading axis does not divide over them.

    Conv layers apply it to their outputs: XLA's SPMD partitioner (jax 0.10, Shardy and GSPMD
    alike) can mis-partition a convolution whose activations it left sharded over the batch on
    `fsdp` only and over channels on `model`, on meshes with data, fsdp and model all > 1: on a
    (2, 2, 2) mesh the VQ-GAN's and TECO's gradient norms came out 2-8% wrong, silently
    (tests/test_sharding.py checks every mesh against one device). Pinning the conv
    activations to the batch layout avoids that pattern.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names) or not x.ndim:
        return x
    if x.shape[0] % math.prod(mesh.shape[a] for a in BATCH_AXES):
        return x
    return jax.lax.with_sharding_constraint(x, P(BATCH_AXES))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble this process's part of the batch into global arrays sharded over the batch axes."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
            for k, v in local.items()}


def inference_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh ("data",) for inference over `devices` (default: every device of this process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), ("data",))


def shard_batch(x, mesh: Mesh | None) -> jax.Array:
    """x on the mesh, its leading (batch) axis split over "data" when it divides, else replicated
    (mesh None: the default device)."""
    if mesh is None:
        return jnp.asarray(x)
    spec = P("data") if np.ndim(x) and np.shape(x)[0] % mesh.devices.size == 0 else P()
    return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))


def replicate(module: nnx.Module, mesh: Mesh) -> None:
    """Place every array of `module` on all devices of the mesh (in place)."""
    nnx.update(module, jax.device_put(nnx.state(module), NamedSharding(mesh, P())))


def to_host(x: Any) -> np.ndarray:
    """All of an array as numpy, on every process: a global array sharded over several hosts is
    all-gathered first (every process must call this together)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
