"""A saved run's configuration as a config file.

    python -m teco_jax.train --config configs/saved.py:runs/teco --workdir runs/teco_again
    python -m teco_jax.train --config runs/teco/config.json --workdir runs/teco   # the same, shorter

The argument is a training workdir or the path of its config.json (what `teco_jax.train`
wrote when the run started): the run's settings exactly, so a run can be reproduced or
resumed without its original config file and preset; `--config.KEY=VALUE` overrides apply
on top, as for any config file.
"""

import json
import pathlib

import ml_collections


def get_config(arg: str = ""):
    if not arg:
        raise ValueError("configs/saved.py needs a workdir or a config.json: --config configs/saved.py:WORKDIR")
    path = pathlib.Path(arg)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a training workdir holds the config.json of its run)")
    try:
        c = ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid config.json ({e})") from e
    c.lock()
    return c
