"""Readers for episode files in the TECO authors' layout, with validation.

Two layouts are accepted, the ones the TECO authors' downloads use:

    ROOT/{train,test}/**/*.npz   each with `video` uint8 (T, H, W, 3), `actions` int (T,)
    ROOT/{train,test}/**/*.mp4   each with a sibling `.npz` holding `actions` (T,)

Our generators add `pose` float (T, 3) and per-episode arrays (e.g. a maze `layout`);
any extra array is kept. Every problem raises `EpisodeError` naming the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

Episode = dict[str, np.ndarray]
SPLITS = ("train", "test")


class EpisodeError(ValueError):
    """A dataset file is unreadable or does not match the expected layout."""


def find_episodes(root: Path | str, split: str) -> list[Path]:
    """Sorted episode files of one split: every `*.npz`, or `*.mp4` with a sibling npz."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise EpisodeError(f"{split_dir}: no such directory (expected ROOT/{{{','.join(SPLITS)}}}/**/*.npz)")
    mp4s = sorted(split_dir.rglob("*.mp4"))
    if mp4s:
        return mp4s
    npzs = sorted(p for p in split_dir.rglob("*.npz") if not p.name.startswith("."))
    if not npzs:
        raise EpisodeError(f"{split_dir}: no episodes found (looked for **/*.npz and **/*.mp4)")
    return npzs


def read_meta(root: Path | str) -> dict:
    """The generator's meta.json at ROOT if present (num_actions, action names, config)."""
    path = Path(root) / "meta.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EpisodeError(f"{path}: not valid JSON ({e})") from e


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise EpisodeError(f"{path}: corrupt or truncated npz file ({type(e).__name__}: {e})") from e


def _load_mp4(path: Path) -> np.ndarray:
    import imageio.v2 as imageio

    try:
        with imageio.get_reader(path, "ffmpeg") as reader:
            frames = [np.asarray(f) for f in reader]
    except Exception as e:  # imageio raises several unrelated types for bad files
        raise EpisodeError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from e
    if not frames:
        raise EpisodeError(f"{path}: video has no frames")
    return np.stack(frames)


def read_episode(path: Path | str, num_actions: int | None = None) -> Episode:
    """Read and validate one episode: `video` uint8 (T,H,W,3), `actions` int32 (T,), extras.

    num_actions: if given, actions must lie in [0, num_actions).
    """
    path = Path(path)
    if path.suffix == ".mp4":
        side = path.with_suffix(".npz")
        if not side.exists():
            raise EpisodeError(f"{path}: missing the sibling {side.name} with `actions`")
        arrays = _load_npz(side)
        arrays["video"] = _load_mp4(path)
    elif path.suffix == ".npz":
        arrays = _load_npz(path)
    else:
        raise EpisodeError(f"{path}: unsupported file type (expected .npz or .mp4)")
    return validate_episode(arrays, path, num_actions)


def validate_episode(arrays: dict[str, np.ndarray], path: Path | str,
                     num_actions: int | None = None) -> Episode:
    """Check shapes, dtypes and ranges; returns the episode with canonical dtypes."""
    for key in ("video", "actions"):
        if key not in arrays:
            raise EpisodeError(f"{path}: no `{key}` array (has {sorted(arrays)})")
    video, actions = arrays["video"], arrays["actions"]
    if video.dtype != np.uint8:
        raise EpisodeError(f"{path}: `video` must be uint8, got {video.dtype}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise EpisodeError(f"{path}: `video` must have shape (T, H, W, 3), got {video.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        raise EpisodeError(f"{path}: `actions` must be integers, got {actions.dtype}")
    if actions.shape != (len(video),):
        raise EpisodeError(f"{path}: `actions` must have shape ({len(video)},) to match `video` "
                           f"{video.shape}, got {actions.shape}")
    if len(actions) and actions.min() < 0:
        raise EpisodeError(f"{path}: negative action {actions.min()}")
    if num_actions is not None and len(actions) and actions.max() >= num_actions:
        raise EpisodeError(f"{path}: action {actions.max()} out of range: the action set has "
                           f"{num_actions} actions (0..{num_actions - 1})")
    out = dict(arrays)
    out["actions"] = actions.astype(np.int32)
    if "pose" in out:
        pose = out["pose"]
        if pose.shape != (len(video), 3):
            raise EpisodeError(f"{path}: `pose` must have shape ({len(video)}, 3), got {pose.shape}")
        out["pose"] = pose.astype(np.float32)
    return out


def iter_episodes(root: Path | str, split: str, num_actions: int | None = None,
                  skip_bad: bool = False) -> Iterator[tuple[str, Episode]]:
    """Yield (episode id, episode) for a split; ids are paths relative to ROOT/split.

    With skip_bad, unreadable or invalid files are reported and skipped instead of raising.
    """
    root = Path(root)
    for path in find_episodes(root, split):
        try:
            episode = read_episode(path, num_actions)
        except EpisodeError as e:
            if not skip_bad:
                raise
            print(f"skipping bad episode: {e}")
            continue
        yield str(path.relative_to(root / split)), episode
