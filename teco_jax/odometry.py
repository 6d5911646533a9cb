"""Odometry: which earlier frame was taken from the same place, dead-reckoned from the actions
(not in TECO; `model.odometry`).

Dimension keys: B batch, T frames, P earlier frames, A actions (+ the null action).

A recall keyed on (previous view, action) (nn/recall.py) finds the earlier frame only while
every generated frame is exact: after the first view that nothing predicts, its keys match
nothing and a rollout never finds its way back (docs/cpu_world.md, "Odometry"). A pose does
not depend on the frames being right. In a world of cell moves and quarter turns each action
is a rigid motion of the camera: a turn by a multiple of 90 degrees and a step of one cell
forward, back, left or right (or none). The motion of each action is a `Table`, fitted
from the training clips' loop closures (`fit`: the table under which the latest frame at the
same pose shows the same view most often), never given. A step blocked by a wall does not
move: the pose of frame s counts its step only if frame s differs from frame s - 1, so an
earlier frame's pose uses frames <= s; the query for frame t assumes its own step moves.
So frame t's match reads frames < t and actions <= t only.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax.errors import UserError
from teco_jax.nn.util import shift_right

# Egocentric steps (forward, left) per move index; world directions per heading (quarter turns).
MOVES = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
MOVE_NAMES = ("none", "forward", "backward", "left", "right")
_DIRS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], np.int32)


@dataclasses.dataclass(frozen=True)
class Table:
    """Per action: `turn` quarter turns to the left (0-3) and `move` (an index of MOVES).
    Written and read as text: "turn=0,0,0,0,1,3;move=1,2,3,4,0,0" (config.model.odometry)."""
    turn: tuple[int, ...]
    move: tuple[int, ...]

    def __str__(self) -> str:
        return f"turn={','.join(map(str, self.turn))};move={','.join(map(str, self.move))}"

    @classmethod
    def parse(cls, text: str, num_actions: int) -> "Table":
        try:
            parts = dict(p.split("=", 1) for p in text.split(";"))
            turn, move = (tuple(int(v) for v in parts[k].split(",")) for k in ("turn", "move"))
        except (ValueError, KeyError) as e:
            raise UserError(f"config.model.odometry={text!r}: expected 'turn=T0,T1,...;move=M0,M1,...' "
                            f"(one entry per action), 'fit' or ''") from e
        if len(turn) != num_actions or len(move) != num_actions:
            raise UserError(f"config.model.odometry={text!r} has {len(turn)} turns and {len(move)} moves for "
                            f"{num_actions} actions (config.model.num_actions)")
        if not all(0 <= v < 4 for v in turn) or not all(0 <= v < len(MOVES) for v in move):
            raise UserError(f"config.model.odometry={text!r}: turns are 0-3 quarter turns, moves 0-4 "
                            f"({', '.join(MOVE_NAMES)})")
        return cls(turn, move)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(turn (A+1,), step (A+1, 2)) with the null action last: no motion."""
        return (np.array(self.turn + (0,), np.int32), np.array([MOVES[m] for m in self.move] + [(0, 0)], np.int32))


def moved(frames_BT: jax.Array) -> jax.Array:
    """(B, T) bool: frame s differs from frame s - 1 (False for s = 0). frames_BT...: any trailing
    dimensions (codes or embeddings)."""
    axes = tuple(range(2, frames_BT.ndim))
    return jnp.pad(jnp.any(frames_BT[:, 1:] != frames_BT[:, :-1], axis=axes), ((0, 0), (1, 0)))


def _poses(actions_BT, moved_BT, turn_A, step_A2):
    """Headings (B, T) (a turn is never blocked, so a frame's heading is also its query's),
    positions (B, T, 2) with blocked steps undone, and the query positions: frame t-1's
    position plus a_t's step, assumed not blocked."""
    turn, step = jnp.asarray(turn_A)[actions_BT], jnp.asarray(step_A2)[actions_BT]
    turn, step = turn.at[:, 0].set(0), step.at[:, 0].set(0)  # frame 0 is the origin
    heading = jnp.cumsum(turn, axis=1) % 4
    before = shift_right(heading)
    fwd, left = jnp.asarray(_DIRS)[before], jnp.asarray(_DIRS)[(before + 1) % 4]
    world = step[..., :1] * fwd + step[..., 1:] * left  # (B, T, 2)
    xy = jnp.cumsum(world * moved_BT[..., None], axis=1)
    return heading, xy, shift_right(xy) + world


def latest_same_place(actions_BT: jax.Array, moved_BT: jax.Array, table: Table,
                      at: jax.Array | None = None) -> jax.Array:
    """(B, T) int32: for each frame t the latest earlier frame p < t at frame t's dead-reckoned
    pose, or -1. Reads moved_BT[:, :t] and actions_BT[:, :t + 1] only. at: only that (traced)
    frame's, (B, 1) (a rollout step compares one query with the window, not every pair)."""
    turn, step = table.arrays()
    return _latest(actions_BT, moved_BT, turn, step, at)


def _latest(actions_BT, moved_BT, turn_A, step_A2, at=None):
    heading, xy, q_xy = _poses(actions_BT, moved_BT, turn_A, step_A2)
    t = actions_BT.shape[1]
    rows = jnp.arange(t) if at is None else jnp.reshape(at, (1,))
    q_heading, q_xy = jnp.take(heading, rows, axis=1), jnp.take(q_xy, rows, axis=1)
    same = (q_heading[:, :, None] == heading[:, None, :]) & jnp.all(q_xy[:, :, None] == xy[:, None, :], axis=-1)
    same &= jnp.arange(t)[None, :] < rows[:, None]
    return jnp.max(jnp.where(same, jnp.arange(t), -1), axis=-1).astype(jnp.int32)


@jax.jit
def _score(actions_NT, views_NT, turn_A, step_A2):
    """How often the latest frame at the same pose shows frame t's view (views: ids per clip)."""
    p = _latest(actions_NT, moved(views_NT), turn_A, step_A2)
    hit = (p >= 0) & (jnp.take_along_axis(views_NT, jnp.maximum(p, 0), axis=1) == views_NT)
    return jnp.mean(hit[:, 1:])


def view_ids(frames_NT: np.ndarray) -> np.ndarray:
    """(N, T) int: per clip, an id per distinct frame (frames: codes or pixels per frame)."""
    n, t = frames_NT.shape[:2]
    flat = frames_NT.reshape(n, t, -1)
    return np.stack([np.unique(clip, axis=0, return_inverse=True)[1].reshape(t) for clip in flat]).astype(np.int32)


def fit(actions_NT: np.ndarray, frames_NT: np.ndarray, num_actions: int, sweeps: int = 3,
        verbose: bool = False) -> tuple[Table, float]:
    """The Table that best predicts loop closures in these clips, by coordinate ascent from
    "nothing moves": each action in turn takes the (turn, move) under which the latest frame
    at the same dead-reckoned pose shows the same view most often. Returns (table, that rate)."""
    actions = jnp.asarray(actions_NT, jnp.int32)
    views = jnp.asarray(view_ids(np.asarray(frames_NT)))
    table = Table((0,) * num_actions, (0,) * num_actions)
    best = float(_score(actions, views, *table.arrays()))
    for _ in range(sweeps):
        changed = False
        for a in range(num_actions):
            for turn, move in itertools.product(range(4), range(len(MOVES))):
                cand = Table(table.turn[:a] + (turn,) + table.turn[a + 1:], table.move[:a] + (move,) + table.move[a + 1:])
                s = float(_score(actions, views, *cand.arrays()))
                if s > best + 1e-9:
                    table, best, changed = cand, s, True
        if verbose:
            print(f"odometry fit: {table} (the same view at the same pose for {best:.3f} of frames)")
        if not changed:
            break
    return table, best
