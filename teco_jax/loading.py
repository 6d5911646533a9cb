"""Trained models for inference: parameters only, without the Trainer or the optimizer.

    model, config = load_model("runs/teco")            # the latest checkpoint
    model, config = load_model("runs/vqgan", step=2000, mesh=mesh)
    vqgan, vq_config = load_vqgan("runs/vqgan")        # a VQ-GAN workdir or a bundle's VQ-GAN

The model is built abstractly (`nnx.eval_shape`: no memory, no random init), and only the
"params" and "rest" subtrees of the checkpoint are read (orbax partial restore): Adam's
moments, the step and the RNG key stay on disk. The arrays are placed replicated on `mesh`
(default: one device), ready for inference that shards the batch over the data axes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from teco_jax import bundle_format, checkpoint, parallel
from teco_jax.errors import UserError
from teco_jax.tasks import base as tasks

#: The bundle file that holds each task's parameters (teco_jax/bundle_format.py).
BUNDLE_FILES = {"teco": "teco.msgpack"}


def abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
    """The config's model with ShapeDtypeStructs for arrays (built without computing anything)."""
    task = tasks.get(config.task)(config)
    return nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))


def load_model(workdir: Path | str, step: int | None = None, mesh: Mesh | None = None,
               config: ml_collections.ConfigDict | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """The model of a training workdir at checkpoint `step` (default the latest), and its config."""
    workdir = Path(workdir)
    config = checkpoint.load_config(workdir) if config is None else config
    available = checkpoint.checkpoint_steps(workdir)
    if not available:
        raise FileNotFoundError(f"{workdir}: no checkpoint in {workdir / 'checkpoints'}")
    step = available[-1] if step is None else step
    if step not in available:
        raise FileNotFoundError(f"{workdir}: no checkpoint {step}; it has {available}")
    mesh = mesh or parallel.inference_mesh(jax.devices()[:1])
    replicated = NamedSharding(mesh, P())
    model = abstract_model(config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    target = {"params": params}
    if jax.tree.leaves(rest):
        target["rest"] = rest
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), target)
    path = workdir.absolute() / "checkpoints" / str(step) / "state"  # orbax restores from absolute paths only
    checkpoint.check_arrays(path, target, partial=True)
    args = ocp.args.PyTreeRestore(item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                  partial_restore=True)
    with ocp.PyTreeCheckpointer() as ckptr:
        restored = ckptr.restore(path, args=args)
    return nnx.merge(graphdef, restored["params"], restored.get("rest", rest)), config


def load_vqgan(workdir: Path | str, mesh: Mesh | None = None, config: ml_collections.ConfigDict | None = None,
               ) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """The VQ-GAN (the `vqgan` module, no discriminator) and its config, of a VQ-GAN training
    workdir (config.json + its latest checkpoint, placed on `mesh` as `load_model` does;
    `config`: its config, when already read) or of a bundle directory (teco_jax.bundle,
    e.g. checkpoints/maze_smooth; `mesh` and `config` do not apply). ValueError if the
    workdir holds another task's run."""
    if bundle_format.is_bundle(workdir):
        return bundle_format.read_vqgan(workdir)
    model, config = load_model(workdir, mesh=mesh, config=config)
    if config.task != "vqgan":
        raise ValueError(f"{workdir} holds a {config.task!r} run, not a VQ-GAN")
    return model.vqgan, config


def _shapes(tree) -> dict[str, tuple]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(x.shape) for path, x in flat}


def initial_params(source: Path | str, config: ml_collections.ConfigDict) -> dict:
    """Parameters (a pure dict) to start training `config`'s model from (`train.init_from`):
    a training workdir of the same task (its latest checkpoint) or a bundle (TECO only).
    A UserError naming `source` (and the first arrays that differ) if they cannot."""
    source = Path(source)
    if bundle_format.is_bundle(source):
        name = BUNDLE_FILES.get(config.task)
        if name is None:
            raise UserError(f"train.init_from={source}: a bundle holds no {config.task!r} training "
                             f"parameters (it can start: {sorted(BUNDLE_FILES)}); give a training workdir")
        try:
            pure = bundle_format.read_params(source / name)
        except ValueError as e:
            raise UserError(f"train.init_from: {e}") from e
    elif checkpoint.checkpoint_steps(source):
        stored = checkpoint.load_config(source)
        if stored.task != config.task:
            raise UserError(f"train.init_from={source}: a {stored.task!r} workdir cannot start a "
                             f"{config.task!r} model")
        model, _ = load_model(source, config=stored)
        pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    else:
        raise UserError(f"train.init_from={source}: neither a bundle nor a training workdir with a checkpoint")
    want = _shapes(nnx.to_pure_dict(nnx.state(abstract_model(config), nnx.Param)))
    have = _shapes(pure)
    diff = [f"{k}: {have.get(k, 'missing')} here, {want.get(k, 'not in the model')} in the model"
            for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
    if diff:
        raise UserError(f"train.init_from={source}: its parameters do not fit the configured model "
                         f"({len(diff)} arrays differ; " + "; ".join(diff[:3]) + ")")
    return pure
