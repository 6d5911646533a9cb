"""Statistics over groups of videos: the mean ± std (ddof 0) over groups that every table reports."""

from __future__ import annotations

import numpy as np

from eval.fvd import frechet_distance


def group_stats(per_video_N: np.ndarray, group_size: int) -> dict:
    """{"mean", "std", "groups"}: the mean of each group of `group_size` consecutive videos,
    their mean and std (ddof 0; None for a single group)."""
    v = np.asarray(per_video_N, np.float64)
    groups = v.reshape(-1, group_size).mean(axis=1)
    std = float(groups.std()) if len(groups) > 1 else None
    return {"mean": float(groups.mean()), "std": std, "groups": groups.tolist()}


def curve_stats(per_frame_NT: np.ndarray, group_size: int) -> dict:
    """Per-horizon curve: {"mean": (T,) mean over videos, "std": (T,) std over group means}."""
    v = np.asarray(per_frame_NT, np.float64)
    groups = v.reshape(-1, group_size, v.shape[1]).mean(axis=1)
    return {"mean": v.mean(axis=0).tolist(), "std": groups.std(axis=0).tolist()}


def masked_stats(per_frame_NT: np.ndarray, mask_NT: np.ndarray, group_size: int) -> dict:
    """Metric over the frames where mask holds, pooled per group: {"mean", "std", "frames",
    "groups" (None for a group without such frames)}; mean and std (ddof 0) over the groups
    that have some (std None unless at least two do)."""
    v = np.asarray(per_frame_NT, np.float64).reshape(-1, group_size * per_frame_NT.shape[1])
    m = np.asarray(mask_NT, bool).reshape(v.shape)
    counts = m.sum(axis=1)
    groups = [float(row[sel].mean()) if n else None for row, sel, n in zip(v, m, counts)]
    have = np.array([g for g in groups if g is not None])
    mean = float(have.mean()) if len(have) else None
    std = float(have.std()) if len(have) > 1 else None
    return {"mean": mean, "std": std, "frames": int(counts.sum()), "groups": groups}


def fvd_group_stats(real_NF: np.ndarray, fake_NF: np.ndarray, group_size: int) -> dict:
    """FVD per group of `group_size` consecutive videos (real group j against generated group j),
    as TECO reports it: {"mean", "std" (ddof 0; None for one group), "groups", "all_videos" (one
    FVD over all videos: lower, FVD falls as videos are added)}."""
    n = len(real_NF)
    groups = [frechet_distance(real_NF[s:s + group_size], fake_NF[s:s + group_size]) for s in range(0, n, group_size)]
    g = np.array(groups, np.float64)
    return {"mean": float(g.mean()), "std": float(g.std()) if len(g) > 1 else None, "groups": groups,
            "group_size": group_size, "all_videos": frechet_distance(real_NF, fake_NF)}
