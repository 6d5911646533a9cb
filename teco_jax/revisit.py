"""Which frames look at a place the video has already shown: the revisit split of the benchmark.

A frame *revisits* when the agent stands in a grid cell it stood in during the earlier
frames (same floor(x), floor(y)) with a heading within `max_angle_deg` of the heading it
had there. Poses are (x, y, heading in radians) per frame, x and y in cell (or block)
units, as the dataset generators write them (`data_gen.maze`, `data_gen.voxel`).

    mask = revisit_mask(pose_TP, split=144)  # bool (T - 144,): frame split + i revisits
    mask.mean()                              # the revisit fraction of the episode

The benchmark scores predicted frames separately on revisited places (where a model with
long-range memory can do better than guessing) and new ones; `memory_mask` picks the
revisits of places that only the early context showed (the memory test). The dataset
generators report the same fractions for the episodes they write. Numpy only.
"""

from __future__ import annotations

import math

import numpy as np

ANGLE_TOL = 1e-6  # radians: a heading exactly max_angle_deg away still counts (round-off)


def wrap_angle(a):
    """Angles (radians) wrapped into [-pi, pi): floats, numpy or jax arrays. The one angle helper of
    the generators, the benchmark and the pose memory."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def revisit_mask(pose_TP: np.ndarray, split: int, max_angle_deg: float = 45.0) -> np.ndarray:
    """For every frame t >= split: was its cell seen in frames [0, split) with a close heading?

    pose_TP: (..., T, P) with P >= 3, columns x, y, heading (radians); leading dimensions
      (episodes) are kept.
    split: frames [0, split) are the memory (the context); frames [split, T) are scored.
    Returns bool (..., max(T - split, 0)). Headings compare modulo 2 pi (359 and 1 degree are
    2 degrees apart).
    """
    pose = np.asarray(pose_TP, np.float64)
    if pose.ndim < 2 or pose.shape[-1] < 3:
        raise ValueError(f"revisit_mask: pose must be (..., T, 3) = x, y, heading; got shape {pose.shape}")
    if split < 0:
        raise ValueError(f"revisit_mask: split must be >= 0, got {split}")
    if not 0 <= max_angle_deg <= 180:
        raise ValueError(f"revisit_mask: max_angle_deg must lie in [0, 180], got {max_angle_deg}")
    t = pose.shape[-2]
    split = min(split, t)
    cell = np.floor(pose[..., :2]).astype(np.int64)                      # (..., T, 2)
    seen, now = cell[..., :split, :], cell[..., split:, :]
    same_cell = (now[..., :, None, :] == seen[..., None, :, :]).all(-1)  # (..., T - split, split)
    heading = pose[..., 2]
    turn = np.abs(wrap_angle(heading[..., split:, None] - heading[..., None, :split]))
    close = turn <= math.radians(max_angle_deg) + ANGLE_TOL
    return (same_cell & close).any(axis=-1)


def memory_mask(pose_TP: np.ndarray, split: int, window: int, max_angle_deg: float = 45.0) -> np.ndarray:
    """For every frame t >= split: does it revisit a place seen *only before* the last `window`
    context frames? True where the frame's cell and heading were seen in frames
    [0, split - window) and not in [split - window, split).

    These are the frames that test long-range memory: a model that sees only the last
    `window` context frames (the benchmark's short-window baseline) was never shown them.
    Returns bool (..., max(T - split, 0)); all False when window >= split.
    """
    pose = np.asarray(pose_TP, np.float64)
    if window < 1:
        raise ValueError(f"memory_mask: window must be >= 1, got {window}")
    t = pose.shape[-2]
    split = min(split, t)
    early = split - window
    if early <= 0:
        return np.zeros(pose.shape[:-2] + (t - split,), bool)
    before = revisit_mask(np.concatenate([pose[..., :early, :], pose[..., split:, :]], axis=-2), early, max_angle_deg)
    recent = revisit_mask(pose[..., early:, :], window, max_angle_deg)
    return before & ~recent
