"""Pose memory: which earlier frames were taken nearest the pose the actions lead to
(not in TECO; `config.model.memory`).

Dimension keys: B batch, T frames, P earlier frames, K retrieved frames, A actions (+ the null
action).

A lookup keyed on views finds an earlier frame only while every generated view is right, and
in a world of smooth motion no view ever repeats exactly. A pose needs neither. Each action is
a rigid motion of the camera in its own frame: a turn (radians, to the left) and a step
(forward, left; cells or blocks), both continuous. `Motion` holds them per action, fitted on
the training clips' poses (`Motion.fit`: per action, the median change between consecutive
frames that moved, so collisions and noise do not pull it) or given as text.

Dead reckoning starts at frame 0 (the origin). A step blocked by a wall changes nothing on
screen, so frame s takes its action's step only if frame s differs from frame s - 1: an earlier
frame's pose reads frames <= s. The query pose of frame t is frame t - 1's pose moved by a_t,
assumed not blocked. So frame t's retrieval reads frames < t and actions <= t only.

Retrieval ranks the earlier frames p < t by

    d^2 = |xy_p - xy_q|^2 + (turn_cost * wrap(heading_p - heading_q))^2      (cells^2)

and keeps the K nearest (the latest first among equals; frames younger than `min_age` are left
to the transformer); one counts as found when d <= radius.
The decoder reads each found frame's VQ-GAN embeddings with its pose relative to the query
(forward, left, turn), so it can correct a near view into the right one rather than copy it.
In a world of whole-cell moves and quarter turns the nearest earlier frame at d = 0 shows the
same view: copying exact revisits is the special case (docs/cpu_world.md, "Pose memory").
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax.errors import UserError
from teco_jax.nn.util import shift_right
from teco_jax.revisit import wrap_angle as wrap

POSE_FEATURES = 4  # per retrieved frame: forward, left, turn (relative to the query), found


@dataclasses.dataclass(frozen=True)
class Motion:
    """Per action: `turn` in degrees to the left, `forward` and `left` steps in cells. Written and
    read as text: "turn=0,0,0,0,15,-15;forward=0.15,-0.1,0,0,0,0;left=0,0,0.1,-0.1,0,0"."""
    turn: tuple[float, ...]
    forward: tuple[float, ...]
    left: tuple[float, ...]

    def __str__(self) -> str:
        fmt = lambda v: ",".join(f"{x:.4g}" for x in v)  # noqa: E731
        return f"turn={fmt(self.turn)};forward={fmt(self.forward)};left={fmt(self.left)}"

    @classmethod
    def parse(cls, text: str, num_actions: int) -> "Motion":
        try:
            parts = dict(p.split("=", 1) for p in text.split(";"))
            turn, forward, left = (tuple(float(v) for v in parts[k].split(",")) for k in ("turn", "forward", "left"))
        except (ValueError, KeyError) as e:
            raise UserError(f"config.model.memory.motion={text!r}: expected "
                            f"'turn=T0,T1,...;forward=F0,...;left=L0,...' (degrees and cells, one entry per "
                            f"action), 'fit' or ''") from e
        if not len(turn) == len(forward) == len(left) == num_actions:
            raise UserError(f"config.model.memory.motion={text!r} has {len(turn)} turns, {len(forward)} forward and "
                            f"{len(left)} left steps for {num_actions} actions (config.model.num_actions)")
        if not all(math.isfinite(v) for v in turn + forward + left):
            raise UserError(f"config.model.memory.motion={text!r}: every value must be a finite number")
        return cls(turn, forward, left)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(turn (A+1,) radians, step (A+1, 2) forward/left) with the null action last: no motion."""
        turn = np.radians(np.array(self.turn + (0.0,), np.float64)).astype(np.float32)
        step = np.array(list(zip(self.forward, self.left)) + [(0.0, 0.0)], np.float32)
        return turn, step

    @classmethod
    def fit(cls, actions_NT: np.ndarray, pose_NT3: np.ndarray, num_actions: int) -> tuple["Motion", np.ndarray]:
        """Each action's median motion between consecutive frames that moved, in the camera's frame
        of the earlier one. Steps that changed nothing (blocked) are left out, as in dead reckoning.
        Returns (motion, the fraction of each action's steps that moved); an action never taken,
        or that never moved, gets no motion."""
        actions, pose = np.asarray(actions_NT)[:, 1:], np.asarray(pose_NT3, np.float64)
        if pose.ndim != 3 or pose.shape[-1] < 3 or pose.shape[:2] != np.asarray(actions_NT).shape:
            raise UserError(f"fitting the pose memory's motion needs pose arrays (N, T, 3) for actions "
                            f"{np.asarray(actions_NT).shape}; got {pose.shape}")
        prev, cur = pose[:, :-1], pose[:, 1:]
        c, s = np.cos(prev[..., 2]), np.sin(prev[..., 2])
        dx, dy = cur[..., 0] - prev[..., 0], cur[..., 1] - prev[..., 1]
        delta = np.stack([np.degrees(wrap(cur[..., 2] - prev[..., 2])), c * dx + s * dy, -s * dx + c * dy], -1)
        moved = np.abs(delta).max(-1) > 1e-6
        turn, forward, left, rate = [], [], [], np.zeros(num_actions)
        for a in range(num_actions):
            taken = actions == a
            rows = delta[taken & moved]
            rate[a] = (taken & moved).sum() / max(taken.sum(), 1)
            med = np.median(rows, axis=0) if len(rows) else np.zeros(3)
            med = np.round(med, 4) + 0.0  # the text form stays short; -0.0 becomes 0.0
            turn.append(float(med[0])), forward.append(float(med[1])), left.append(float(med[2]))
        return cls(tuple(turn), tuple(forward), tuple(left)), rate


def moved(frames_BT: jax.Array) -> jax.Array:
    """(B, T) bool: frame s differs from frame s - 1 (False for s = 0). frames_BT...: any trailing
    dimensions (codes or embeddings)."""
    axes = tuple(range(2, frames_BT.ndim))
    return jnp.pad(jnp.any(frames_BT[:, 1:] != frames_BT[:, :-1], axis=axes), ((0, 0), (1, 0)))


def dead_reckon(actions_BT: jax.Array, moved_BT: jax.Array, motion: Motion) -> tuple[jax.Array, jax.Array]:
    """(poses (B, T, 3), query poses (B, T, 3)) as x, y, heading, frame 0 at the origin facing +x.
    A turn always counts (it is never blocked); a step counts where the frame moved. The query of
    frame t is frame t - 1's pose moved by a_t, blocked or not."""
    turn_A, step_A2 = motion.arrays()
    turn, step = jnp.asarray(turn_A)[actions_BT], jnp.asarray(step_A2)[actions_BT]
    turn, step = turn.at[:, 0].set(0.0), step.at[:, 0].set(0.0)  # frame 0 is the origin
    heading = jnp.cumsum(turn, axis=1)
    before = shift_right(heading)
    c, s = jnp.cos(before), jnp.sin(before)
    world = jnp.stack([c * step[..., 0] - s * step[..., 1], s * step[..., 0] + c * step[..., 1]], -1)  # (B, T, 2)
    xy = jnp.cumsum(world * moved_BT[..., None].astype(world.dtype), axis=1)
    pose = jnp.concatenate([xy, heading[..., None]], -1)
    query = jnp.concatenate([shift_right(xy) + world, heading[..., None]], -1)
    return pose, query


@dataclasses.dataclass(frozen=True)
class Retrieval:
    """How earlier frames are ranked (config.model.memory): K neighbours, the cost of a turn in
    cells per radian, the largest distance (cells) that still counts as found, and the youngest
    frame read (min_age 1: frame t - 1 on; larger leaves the latest frames to the transformer,
    so a rollout's own recent frames cannot crowd the context's views of a place out)."""
    neighbours: int = 2
    turn_cost: float = 0.5
    radius: float = 0.5
    min_age: int = 1
    latest: bool = False  # also read frame t - 1 (with its pose relative to the query), first

    @property
    def slots(self) -> int:
        return self.neighbours + int(self.latest)


def nearest(pose_BT3: jax.Array, query_BT3: jax.Array, retrieval: Retrieval, at: jax.Array | None = None
            ) -> tuple[jax.Array, jax.Array]:
    """For each frame t (or only the traced frame `at`), the K earlier frames p <= t - min_age nearest
    its query (after frame t - 1 itself with `latest`: K = neighbours + latest slots).

    Returns (index (B, R, K) int32, relative pose features (B, R, K, POSE_FEATURES)), R = T or 1:
    the retrieved frame's position and heading in the query's frame (forward, left, turn) and
    whether it is found (d <= radius, and p < t exists); features are zero where not found."""
    t = pose_BT3.shape[1]
    rows = jnp.arange(t) if at is None else jnp.reshape(at, (1,))
    q = jnp.take(query_BT3, rows, axis=1)  # (B, R, 3)
    dxy = pose_BT3[:, None, :, :2] - q[:, :, None, :2]  # (B, R, P, 2)
    dth = wrap(pose_BT3[:, None, :, 2] - q[:, :, None, 2])  # (B, R, P)
    d2 = jnp.sum(dxy ** 2, -1) + (retrieval.turn_cost * dth) ** 2
    earlier = jnp.arange(t)[None, :] <= rows[:, None] - max(retrieval.min_age, 1)  # (R, P)
    score = jnp.where(earlier, -d2 + 1e-6 * jnp.arange(t) / t, -jnp.inf)  # the latest wins a tie
    k = min(retrieval.neighbours, t)
    top, idx = jax.lax.top_k(score, k)  # (B, R, K)
    found = jnp.isfinite(top) & (-top <= retrieval.radius ** 2 + 1e-6)
    if retrieval.latest:  # frame t - 1, found wherever it exists
        prev = jnp.broadcast_to(jnp.maximum(rows - 1, 0)[None, :, None], idx.shape[:2] + (1,))
        idx = jnp.concatenate([prev, idx], axis=2)
        found = jnp.concatenate([jnp.broadcast_to((rows >= 1)[None, :, None], prev.shape), found], axis=2)
    pick = lambda x: jnp.take_along_axis(x, idx, axis=2)  # noqa: E731
    c, s = jnp.cos(q[..., 2])[..., None], jnp.sin(q[..., 2])[..., None]
    rx, ry = pick(dxy[..., 0]), pick(dxy[..., 1])
    feats = jnp.stack([c * rx + s * ry, -s * rx + c * ry, pick(dth), jnp.ones_like(rx)], -1)
    feats = jnp.where(found[..., None], feats, 0.0)
    if k < retrieval.neighbours:  # fewer frames than neighbours (tiny clips): pad with "not found"
        pad = retrieval.neighbours - k
        idx = jnp.pad(idx, ((0, 0), (0, 0), (0, pad)))
        feats = jnp.pad(feats, ((0, 0), (0, 0), (0, pad), (0, 0)))
    return idx.astype(jnp.int32), feats


def retrieve(actions_BT: jax.Array, frames_BT: jax.Array, motion: Motion, retrieval: Retrieval,
             at: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Dead reckoning from the actions (and which frames moved) and `nearest`: (index (B, R, K),
    features (B, R, K, POSE_FEATURES)). frames_BT...: codes or embeddings, read for `moved` only."""
    pose, query = dead_reckon(actions_BT, moved(frames_BT), motion)
    return nearest(pose, query, retrieval, at)


def rotate_view(e_BHWC: jax.Array, turn_B: jax.Array, fov_radians: float) -> tuple[jax.Array, jax.Array]:
    """An earlier view turned into the query's heading: its columns shifted by turn / fov of the
    width (turn = the earlier heading minus the query's, to the left; a camera turned right sees
    the scene move left), linearly interpolated, zero where the earlier view saw nothing.
    Returns (the shifted map (B, H, W, C), valid (B, H, W, 1)). Translation is left to the
    decoder. Measured on the smooth maze's 15-degree turns (32x32 frames, 70-degree field of
    view): the previous frame so shifted is 19.9 dB from the current one, 13.6 dB unshifted."""
    w = e_BHWC.shape[2]
    src = jnp.arange(w)[None, :] + (turn_B / fov_radians * w)[:, None]  # (B, W): column read per column
    lo = jnp.floor(src)
    frac = (src - lo)[:, None, :, None].astype(e_BHWC.dtype)
    lo = lo.astype(jnp.int32)

    def column(i):
        ok = (i >= 0) & (i < w)
        x = jnp.take_along_axis(e_BHWC, jnp.clip(i, 0, w - 1)[:, None, :, None], axis=2)
        return x * ok[:, None, :, None].astype(x.dtype), ok[:, None, :, None].astype(e_BHWC.dtype)

    (x0, ok0), (x1, ok1) = column(lo), column(lo + 1)
    valid = (1 - frac) * ok0 + frac * ok1
    shape = e_BHWC.shape[:3] + (1,)
    return (1 - frac) * x0 + frac * x1, jnp.broadcast_to(valid, shape)
