"""Readers for episode files in the TECO authors' layout, with validation.

Two layouts are accepted, the ones the TECO authors' downloads use:

    ROOT/{train,test}/**/*.npz   each with `video` uint8 (T, H, W, 3), `actions` int (T,)
    ROOT/{train,test}/**/*.mp4   each with a sibling `.npz` holding `actions` (T,), or none

They are read as the authors' loader reads them: `actions` longer than the video are cut
to its length, and an mp4 without a sibling npz has no actions, which here means the
null action (index num_actions, the model's "no action given") on every frame; the
authors' loader gives 0 there, a real action in our action sets. `ReadNotes` counts the
files each rule applied to, so a reader reports them once, not per file.

Our generators add `pose` float (T, 3) and per-episode arrays (e.g. a maze `layout`);
any extra array is kept. Every problem raises `EpisodeError` (a `UserError`) naming the file.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from teco_jax.errors import UserError

Episode = dict[str, np.ndarray]
SPLITS = ("train", "test")


class EpisodeError(UserError):
    """A dataset file is unreadable or does not match the expected layout."""


class ReadNotes:
    """The files read under one of the authors' loader's rules, to report once per reader."""

    def __init__(self):
        self.cut: list[Path] = []  # actions longer than the video, cut to its length
        self.without_actions: list[Path] = []  # mp4s without a sibling npz: the null action
        self.null_action: int | None = None

    def report(self) -> None:
        """Print one line per rule that applied (count, first file), then start over."""
        if self.cut:
            print(f"note: {len(self.cut)} file(s) have more actions than frames (first: {self.cut[0]}): "
                  f"actions longer than the video are cut to its length, as the TECO authors' loader does")
        if self.without_actions:
            print(f"note: {len(self.without_actions)} mp4 file(s) have no sibling .npz (first: "
                  f"{self.without_actions[0]}): every frame gets the null action {self.null_action} "
                  f"(index num_actions: no action given; the TECO authors' loader gives action 0)")
        self.cut, self.without_actions = [], []


@contextlib.contextmanager
def _reporting(notes: ReadNotes | None) -> Iterator[ReadNotes]:
    """`notes` as they are, or fresh notes reported when the block ends without an error."""
    if notes is not None:
        yield notes
        return
    own = ReadNotes()
    yield own
    own.report()


def find_splits(root: Path | str, wanted: list[str] | None = None) -> list[str]:
    """The splits of ROOT to read: `wanted` (all found when None), each checked to exist."""
    root = Path(root)
    found = [s for s in SPLITS if (root / s).is_dir()]
    if not found:
        raise EpisodeError(f"{root}: neither train/ nor test/ exists")
    for split in wanted or ():
        if split not in found:
            raise EpisodeError(f"{root}: no split {split!r} ({root / split} is not a directory); "
                               f"splits found: {', '.join(found)}")
    return list(wanted) if wanted else found


def find_episodes(root: Path | str, split: str) -> list[Path]:
    """Sorted episode files of one split: every `*.npz`, or every `*.mp4` if there are any."""
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


def action_set(root: Path | str, num_actions: int | None = None) -> tuple[int | None, tuple[str, ...], str]:
    """(num_actions, action names, where the count comes from) of an episode root.

    The count is `num_actions` when given (a --num_actions flag), else ROOT/meta.json's
    `num_actions` (or the number of its `action_names`), else None: unknown, to be inferred
    from the data. Names come from meta.json and are kept only when they match the count.
    """
    path = Path(root) / "meta.json"
    meta = read_meta(root)
    names = meta.get("action_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EpisodeError(f"{path}: `action_names` must be a list of strings, got {names!r}")
    listed = meta.get("num_actions", len(names) if names else None)
    if names and listed != len(names):
        raise EpisodeError(f"{path}: num_actions={listed} but `action_names` lists {len(names)} names")
    if num_actions is None:
        return listed, tuple(names), (str(path) if listed is not None else "")
    if listed is not None and listed != num_actions:
        raise EpisodeError(f"--num_actions {num_actions} contradicts {path} (num_actions={listed}); "
                           f"drop the flag or fix meta.json")
    return num_actions, tuple(names), "--num_actions"


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


def read_episode(path: Path | str, num_actions: int | None = None, num_actions_from: str = "",
                 notes: ReadNotes | None = None) -> Episode:
    """Read and validate one episode: `video` uint8 (T,H,W,3), `actions` int32 (T,), extras.

    num_actions: if given, actions must lie in [0, num_actions); num_actions_from says where
    that count comes from (e.g. "ROOT/meta.json"), for the error message. notes: where the
    authors' loader's rules (cut actions, no actions) are counted; None: reported at once.
    """
    path = Path(path)
    with _reporting(notes) as notes:
        if path.suffix == ".mp4":
            side = path.with_suffix(".npz")
            if not side.exists():
                return _without_actions(path, num_actions, notes)
            arrays = {**_load_npz(side), "video": _load_mp4(path)}
        elif path.suffix == ".npz":
            arrays = _load_npz(path)
        else:
            raise EpisodeError(f"{path}: unsupported file type (expected .npz or .mp4)")
        return validate_episode(arrays, path, num_actions, num_actions_from, notes)


def _without_actions(path: Path, num_actions: int | None, notes: ReadNotes) -> Episode:
    """An mp4 without a sibling npz: the null action, index num_actions, on every frame."""
    if num_actions is None:
        raise EpisodeError(f"{path}: no sibling {path.with_suffix('.npz').name}, so every frame gets the null "
                           f"action (index num_actions), but the action count is unknown: pass --num_actions N "
                           f"(0 for a set without actions) or give ROOT/meta.json a `num_actions`")
    video = _load_mp4(path)
    _check_video(video, path)
    notes.without_actions.append(path)
    notes.null_action = num_actions
    return {"video": video, "actions": np.full(len(video), num_actions, np.int32)}


def _check_video(video: np.ndarray, path: Path | str) -> None:
    if video.dtype != np.uint8:
        raise EpisodeError(f"{path}: `video` must be uint8, got {video.dtype}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise EpisodeError(f"{path}: `video` must have shape (T, H, W, 3), got {video.shape}")


def validate_episode(arrays: dict[str, np.ndarray], path: Path | str, num_actions: int | None = None,
                     num_actions_from: str = "", notes: ReadNotes | None = None) -> Episode:
    """Check shapes, dtypes and ranges; returns the episode with canonical dtypes.

    `actions` longer than `video` are cut to its length (recorded in `notes`)."""
    for key in ("video", "actions"):
        if key not in arrays:
            raise EpisodeError(f"{path}: no `{key}` array (has {sorted(arrays)})")
    video, actions = arrays["video"], arrays["actions"]
    _check_video(video, path)
    if not np.issubdtype(actions.dtype, np.integer):
        raise EpisodeError(f"{path}: `actions` must be integers, got {actions.dtype}")
    if actions.ndim != 1:
        raise EpisodeError(f"{path}: `actions` must have shape (T,), got {actions.shape}")
    if len(actions) < len(video):
        raise EpisodeError(f"{path}: {len(actions)} actions for the {len(video)} frames of `video`: "
                           f"every frame needs its action")
    if len(actions) > len(video):
        actions = actions[:len(video)]
        with _reporting(notes) as notes:
            notes.cut.append(Path(path))
    if len(actions) and actions.min() < 0:
        raise EpisodeError(f"{path}: negative action {actions.min()}")
    if num_actions is not None and len(actions) and actions.max() >= num_actions:
        origin = f", num_actions from {num_actions_from}" if num_actions_from else ""
        raise EpisodeError(f"{path}: action {actions.max()} out of range: the action set has "
                           f"{num_actions} actions (0..{num_actions - 1}{origin})")
    out = dict(arrays)
    out["actions"] = actions.astype(np.int32)
    if "pose" in out:
        pose = out["pose"]
        if pose.shape != (len(video), 3):
            raise EpisodeError(f"{path}: `pose` must have shape ({len(video)}, 3), got {pose.shape}")
        out["pose"] = pose.astype(np.float32)
    return out


def iter_episodes(root: Path | str, split: str, num_actions: int | None = None, skip_bad: bool = False,
                  num_actions_from: str = "", notes: ReadNotes | None = None) -> Iterator[tuple[str, Episode]]:
    """Yield (episode id, episode) for a split; ids are paths relative to ROOT/split.

    With skip_bad, unreadable or invalid files are reported and skipped instead of raising.
    notes: shared by several readers (e.g. a build's splits); None: reported after the split.
    """
    root = Path(root)
    with _reporting(notes) as notes:
        for path in find_episodes(root, split):
            try:
                episode = read_episode(path, num_actions, num_actions_from, notes)
            except EpisodeError as e:
                if not skip_bad:
                    raise
                print(f"skipping bad episode: {e}")
                continue
            yield str(path.relative_to(root / split)), episode
