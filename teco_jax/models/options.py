"""The TECO model's settings that are not in the paper, typed, with their defaults.

This is the one place those defaults are written: configs/teco_dmlab.py starts from
`Options().as_config()`, and a stored config that lacks a key (a run begun before the key
existed) gets the default here when the model or the task reads it through `Options.of`.
Every default is the paper's behaviour.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from teco_jax.errors import UserError
from teco_jax.models.memory import MemoryConfig


@dataclasses.dataclass(frozen=True)
class Options:
    """remat: recompute E's, D's and the transformer blocks' activations in the backward pass
    (less memory, more time; the same numbers); loss_chunk > 0: the decoder's and the prior's
    losses over groups of this many frames, each recomputed in the backward pass
    (tasks/teco.py, frame_loss_sums); z_dropout: the probability, per training frame, that
    the decoder reads z_t = 0, so that h_t must carry the frame (tasks/teco.py); memory: the
    decoder also reads earlier frames (models/memory.py; off while memory.motion is "")."""
    remat: bool = False
    loss_chunk: int = 0
    z_dropout: float = 0.0
    memory: MemoryConfig = MemoryConfig()

    @classmethod
    def of(cls, model_config: ml_collections.ConfigDict) -> "Options":
        """The options config.model sets, defaults for those it lacks."""
        default = cls()
        values = {f.name: type(getattr(default, f.name))(model_config[f.name])
                  for f in dataclasses.fields(cls) if f.name != "memory" and f.name in model_config}
        options = cls(**values, memory=MemoryConfig.of(model_config))
        if not 0.0 <= options.z_dropout <= 1.0:
            raise UserError(f"config.model.z_dropout={options.z_dropout!r}: it is a probability, between 0 and 1")
        return options

    def as_config(self) -> dict:
        """{key: value} for config.model.update(...)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["memory"] = self.memory.as_config()
        return out
