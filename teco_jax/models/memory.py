"""Memory of earlier frames for TECO's decoder (not in the paper; `config.model.memory`).

Dimension keys: B batch, T frames, R frames asked about (T, or 1 in a rollout step), K slots
(retrieved frames), H/W VQ-GAN grid, E VQ-GAN embedding dim, C channels of a memory map
(K * (E + 1 + POSE_FEATURES)), D decoder width.

A memory source answers one question, in training and in a cached rollout alike: for frame t,
which earlier frames of the window should the decoder look at? `PoseMemory.gather` reads the
VQ-GAN embeddings of the window's frames and their actions, and returns a map per frame that
depends on frames < t and actions <= t only (so it is as causal as h_t); `at` asks about one
(traced) frame, which is what a rollout step needs. `MemoryReader` is the decoder's side of it:
a map in, features out, added where each position is one VQ-GAN code.

The source is the pose memory (teco_jax/pose_memory.py): the K earlier frames nearest the pose
the actions dead-reckon to, each turned into frame t's heading. In a world of whole-cell moves
and quarter turns it finds the frame taken at the same pose (an exact revisit); in a world of
smooth motion, a near view that the decoder corrects (docs/cpu_world.md, "Pose memory").

`MemoryConfig` holds the switch's settings and their defaults, the one place they are written:
configs build `config.model.memory` from it, and a stored config that lacks a key (one added
since the run began) gets the default here.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from teco_jax import pose_memory
from teco_jax.errors import UserError
from teco_jax.nn import layers


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    """config.model.memory. motion: "" (off), "fit" (each action's turn and step fitted on the
    training clips' poses when training starts, then stored in the run's config) or a table
    (pose_memory.Motion's text); neighbours: earlier frames read; turn_cost: cells per radian
    in the pose distance; radius: the largest distance (cells) that counts as found; min_age:
    the youngest frame read (1: frame t - 1 on); latest: also read frame t - 1, in a slot of
    its own; fov_degrees: the camera's horizontal field of view (a view is turned into the
    query's heading by shifting its columns); detect_blocked: a step counts only where the
    frame changed (worlds whose walls block steps)."""
    motion: str = ""
    neighbours: int = 2
    turn_cost: float = 0.5
    radius: float = 1.0
    min_age: int = 1
    latest: bool = False
    fov_degrees: float = 70.0
    detect_blocked: bool = True

    @classmethod
    def of(cls, model_config: ml_collections.ConfigDict) -> "MemoryConfig":
        """The settings in config.model (defaults for keys it lacks); unknown keys are errors."""
        given = dict(model_config.get("memory", None) or {})
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise UserError(f"config.model.memory has unknown keys {unknown}; its keys are {sorted(fields)}")
        default = cls()
        kinds = {k: type(getattr(default, k)) for k in fields}
        return cls(**{k: kinds[k](v) for k, v in given.items()})

    def as_config(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(dataclasses.asdict(self))

    @property
    def on(self) -> bool:
        return bool(self.motion)

    @property
    def retrieval(self) -> pose_memory.Retrieval:
        return pose_memory.Retrieval(self.neighbours, self.turn_cost, self.radius, self.min_age, self.latest)


@dataclasses.dataclass(frozen=True)
class PoseMemory:
    """The source: (actions_BT, e_BTHWE[, at]) -> memory_BRHWC. Holds no parameters.

    Each slot is one retrieved frame: its embeddings turned into the query's heading, the mask
    of what it saw, and its pose relative to the query (forward, left, turn, found), zero where
    none was found. `motion` is None while config.model.memory.motion is still "fit": such a
    model can be built (a dry run) but not run."""
    motion: pose_memory.Motion | None
    retrieval: pose_memory.Retrieval
    detect_blocked: bool
    fov: float  # radians

    @classmethod
    def of(cls, memory: MemoryConfig, num_actions: int) -> "PoseMemory":
        motion = None if memory.motion == "fit" else pose_memory.Motion.parse(memory.motion, num_actions)
        return cls(motion, memory.retrieval, memory.detect_blocked, math.radians(memory.fov_degrees))

    @property
    def slots(self) -> int:
        return self.retrieval.slots

    def gather(self, actions_BT: jax.Array, e_BTHWE: jax.Array, at: jax.Array | None = None) -> jax.Array:
        """(B, R, H, W, K * (E + 1 + POSE_FEATURES)): R = T, or 1 for the traced frame `at`."""
        if self.motion is None:
            raise UserError("config.model.memory.motion='fit' is fitted by the TECO task on the training data "
                            "before training; this model was built from an unfitted config")
        moved = pose_memory.moved(e_BTHWE) if self.detect_blocked else jnp.ones(actions_BT.shape, bool)
        pose, query = pose_memory.dead_reckon(actions_BT, moved, self.motion)
        idx_BRK, feats_BRKF = pose_memory.nearest(pose, query, self.retrieval, at)
        e_BRKHWE = jax.vmap(lambda e, i: e[i])(e_BTHWE, idx_BRK)
        b, r, k, hh, ww, ee = e_BRKHWE.shape
        turned, seen = pose_memory.rotate_view(e_BRKHWE.reshape(b * r * k, hh, ww, ee),
                                               feats_BRKF[..., 2].reshape(-1), self.fov)
        found = feats_BRKF[..., 3].reshape(-1, 1, 1, 1).astype(e_BTHWE.dtype)
        f = jnp.broadcast_to(feats_BRKF.reshape(-1, 1, 1, feats_BRKF.shape[-1]).astype(e_BTHWE.dtype),
                             (b * r * k, hh, ww, feats_BRKF.shape[-1]))
        x = jnp.concatenate([turned * found, seen.astype(e_BTHWE.dtype) * found, f], axis=-1)
        x = x.reshape(b, r, k, hh, ww, -1)  # (B, R, K, H, W, E + 1 + 4)
        return jnp.moveaxis(x, 2, -2).reshape(b, r, hh, ww, -1)


class MemoryReader(nnx.Module):
    """The decoder's side: memory_BHWC -> features_BHWD.

    Each slot passes the same conv and ResBlock, so what is learnt on one slot (the previous
    frame, always there with `latest`) serves every other; the slots are then averaged with
    softmax weights scored from their relative poses (a frame not found gets none; nothing
    found reads zero).
    """

    def __init__(self, slots: int, frame_dim: int, out_dim: int, *, rngs, dtype=None):
        self.slots, self.frame_dim = slots, frame_dim
        per = frame_dim + 1 + pose_memory.POSE_FEATURES
        self.encode = nnx.Sequential(layers.conv(per, out_dim, 3, rngs=rngs, dtype=dtype),
                                     layers.ResBlock(out_dim, out_dim, rngs=rngs, dtype=dtype))
        self.score = nnx.Sequential(layers.dense(pose_memory.POSE_FEATURES, 32, (None, None), rngs=rngs, dtype=dtype),
                                    nnx.swish, layers.dense(32, 1, (None, None), rngs=rngs, dtype=dtype))

    def __call__(self, memory_BHWC: jax.Array) -> jax.Array:
        b, hh, ww, _ = memory_BHWC.shape
        x_BHWKC = memory_BHWC.reshape(b, hh, ww, self.slots, -1)
        feats_BKF = x_BHWKC[:, 0, 0, :, self.frame_dim + 1:]
        found_BK = feats_BKF[..., 3] > 0
        y = self.encode(jnp.moveaxis(x_BHWKC, 3, 1).reshape(b * self.slots, hh, ww, -1))
        y_BKHWD = y.reshape((b, self.slots) + y.shape[1:])
        logits_BK = jnp.where(found_BK, self.score(feats_BKF)[..., 0].astype(jnp.float32), -1e9)
        w_BK = jax.nn.softmax(logits_BK, axis=-1) * jnp.any(found_BK, axis=-1, keepdims=True)
        return jnp.einsum("bk,bkhwd->bhwd", w_BK.astype(y.dtype), y_BKHWD)
