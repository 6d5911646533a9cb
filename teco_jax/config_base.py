"""Defaults shared by every config file under configs/.

A config file defines `get_config(arg)` that starts from `base()`, fills the task's
model/loss sections, applies the preset named by `arg` ("" = paper size, "tiny" =
trains on a 2-core CPU in minutes) and returns the config locked, so a misspelt key
(in the file or on the command line) is an error.
"""

from __future__ import annotations

import pathlib

import ml_collections

from teco_jax import parallel


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = ""
    c.seed = 0
    c.dtype = "float32"  # compute dtype; "bfloat16" for mixed precision (params stay float32)

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # a TFDS directory written by teco_jax.data.build or teco_jax.encode
    c.data.seq_len = 1
    c.data.batch_size = 32  # global, over all processes
    c.data.read_threads = 2
    c.data.prefetch = 4

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-4
    c.optim.end_lr = 0.0
    c.optim.warmup_steps = 5_000
    c.optim.decay_steps = 1_000_000
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.weight_decay = 1e-5
    c.optim.clip_norm = 0.0  # 0 = no clipping

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1_000_000
    c.train.init_from = ""  # a new run starts from these parameters: a workdir or a bundle (fresh optimizer)
    c.train.max_minutes = 0.0  # > 0: checkpoint, evaluate and stop after this much training time
    c.train.log_every = 50
    c.train.ckpt_every = 1_000
    c.train.keep_ckpts = 3
    c.train.image_every = 1_000  # 0 = never
    c.train.eval_every = 10_000  # 0 = only at the end
    c.train.eval_batches = 8
    c.train.eval_batch_size = 16

    # Device mesh: sizes of (data, fsdp, model); -1 = the rest of the devices.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)
    # Logical axis -> mesh axis (or list of axes, or None = replicated); see teco_jax/parallel.py.
    # A tuple, so it can be overridden on the command line:
    #   --config.sharding_rules="(('embed','fsdp'),('mlp','model'),('heads','model'),('vocab',None))"
    c.sharding_rules = tuple(tuple(rule) for rule in parallel.DEFAULT_RULES)

    c.model = ml_collections.ConfigDict()
    c.loss = ml_collections.ConfigDict()
    return c


def compute_dtype(config: ml_collections.ConfigDict):
    """The config's compute dtype as a jnp dtype (None for float32: layers follow their inputs)."""
    import jax.numpy as jnp

    name = config.get("dtype", "float32")
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"config.dtype must be 'float32' or 'bfloat16', got {name!r}")
    return None if name == "float32" else jnp.bfloat16


def load_sibling(this_file: str, name: str):
    """Import another config file from the same directory (config files are loaded by path)."""
    import importlib.util

    path = pathlib.Path(this_file).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"teco_jax_configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def from_file(spec: str) -> ml_collections.ConfigDict:
    """Load `path/to/config.py[:preset]` the way the --config flag does (relative paths are
    looked up from the working directory, then from the repository root)."""

    path, _, preset = spec.partition(":")
    file = pathlib.Path(path)
    if not file.exists():
        file = pathlib.Path(__file__).resolve().parents[1] / path
    if not file.exists():
        raise FileNotFoundError(f"no config file {path} (looked in {pathlib.Path.cwd()} and the repository)")
    return load_sibling(str(file), file.stem).get_config(preset)


def check_preset(arg: str, presets: tuple[str, ...]) -> str:
    if arg not in presets:
        raise ValueError(f"unknown preset {arg!r}; choose one of {presets} (\"\" = paper size)")
    return arg


def _config_spec(argv: list[str]) -> str | None:
    """The value of --config in argv (`--config=X` or `--config X`), if given."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def saved_config_argv(argv: list[str]) -> list[str]:
    """argv with `--config RUN/config.json` (a saved run's config) read through configs/saved.py."""
    spec = _config_spec(argv[1:])
    if spec is None or not spec.endswith(".json"):
        return argv
    saved = f"{pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'saved.py'}:{spec}"
    return [saved if a == spec else f"--config={saved}" if a == f"--config={spec}" else a for a in argv]


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parser for `app.run(main, flags_parser=parse_flags)`: like absl's own, but a
    missing config file, an unknown preset (`:tinyy`) or an override of a key the config does
    not have (`--config.model.nope=1`) is a one-line error naming it, not a traceback."""
    import sys

    from absl import app

    argv = saved_config_argv(argv)
    spec = _config_spec(argv[1:])
    if spec is not None:
        try:
            from_file(spec)
        except (FileNotFoundError, ValueError) as e:
            sys.stderr.write(f"FATAL Flags parsing error: --config {spec}: {e}\n")
            sys.exit(1)
    try:
        return app.parse_flags_with_usage(argv)
    except (KeyError, AttributeError) as e:
        overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
        detail = e
        while isinstance(detail, BaseException) and detail.args:  # ml_collections nests KeyError in AttributeError
            detail = detail.args[0]
        key, _, hint = str(detail).partition("\n")  # "'key'" and maybe "Did you mean ...?"
        key = key.strip("'")
        hint = f"; {hint[0].lower()}{hint[1:]}" if hint else ""
        sys.stderr.write(f"FATAL Flags parsing error: the config has no key {key!r} ({overrides}){hint}\n")
        sys.exit(1)
