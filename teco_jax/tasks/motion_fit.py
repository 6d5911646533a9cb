"""The pose memory's motion per action, fitted on a dataset's poses (config.model.memory.motion = "fit").

The TECO task resolves "fit" before training (TECOTask.resolve): a resumed run takes the
table its stored config holds, and a new run fits one here, on the first training clips'
actions and poses (pose_memory.Motion.fit). The table is written into the run's config, so
checkpoints and bundles carry it and no reader of the model needs the data again.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from teco_jax import pose_memory
from teco_jax.errors import UserError


def fit_motion(config: ml_collections.ConfigDict, max_clips: int = 256) -> str | None:
    """Each action's motion fitted on up to `max_clips` training clips of config.data.dir, as
    text for config.model.memory.motion; None without a dataset (a dry run: the model can be
    built, not run)."""
    from teco_jax.data import tfds_read  # deferred: tensorflow_datasets takes seconds to import

    where = config.data.get("dir", "")
    if not where or where == "random" or not Path(where).exists():
        return None
    _, sources = tfds_read.load(where)
    if "train" not in sources:
        raise UserError(f"config.model.memory.motion='fit' fits on the train split, and {where} has none")
    src, t = sources["train"], int(config.data.seq_len)
    clips = [src[i] for i in range(min(max_clips, len(src)))]
    if "pose" not in clips[0]:
        raise UserError(f"config.model.memory.motion='fit' fits each action's motion on the training clips' "
                        f"poses, and {where} has no `pose` feature: give the motion as a table "
                        f"(config.model.memory.motion='turn=...;forward=...;left=...') or set it to ''")
    actions = np.stack([np.asarray(c["actions"])[:t] for c in clips])
    poses = np.stack([np.asarray(c["pose"])[:t] for c in clips])
    motion, rate = pose_memory.Motion.fit(actions, poses, int(config.model.num_actions))
    print(f"model.memory.motion fitted on {len(clips)} training clips of {where}: {motion} (steps that moved "
          f"per action: {', '.join(f'{r:.2f}' for r in rate)})")
    return str(motion)
