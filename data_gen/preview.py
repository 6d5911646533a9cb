"""Contact sheets: a PNG grid of frames so a person can see what a dataset looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def contact_sheet(videos: Sequence[np.ndarray], path: Path, frames_per_row: int = 8,
                  pad: int = 2, scale: int = 1) -> np.ndarray:
    """Write one row per video with `frames_per_row` evenly spaced frames; returns the image.

    videos: each (T, H, W, 3) uint8, all of the same H and W.
    """
    if not videos:
        raise ValueError("contact_sheet needs at least one video")
    h, w = videos[0].shape[1:3]
    rows = []
    for video in videos:
        if video.shape[1:] != (h, w, 3) or video.dtype != np.uint8:
            raise ValueError(f"videos must all be uint8 (T, {h}, {w}, 3); got {video.dtype} {video.shape}")
        idx = np.linspace(0, len(video) - 1, frames_per_row).round().astype(int)
        row = np.full((h + pad, frames_per_row * (w + pad) + pad, 3), 255, np.uint8)
        for j, t in enumerate(idx):
            row[pad:, pad + j * (w + pad): pad + j * (w + pad) + w] = video[t]
        rows.append(row)
    sheet = np.concatenate(rows + [np.full((pad, rows[0].shape[1], 3), 255, np.uint8)], axis=0)
    if scale > 1:
        sheet = sheet.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)
    return sheet


def contact_sheet_from_dir(root: Path, path: Path, num_videos: int = 6, frames_per_row: int = 8) -> np.ndarray:
    """Contact sheet of the first `num_videos` episodes found under root/{train,test}."""
    files = sorted(Path(root).glob("train/**/*.npz"))[:num_videos]
    if not files:
        files = sorted(Path(root).glob("**/*.npz"))[:num_videos]
    if not files:
        raise FileNotFoundError(f"no .npz episodes under {root}")
    videos = []
    for f in files:
        with np.load(f) as z:
            videos.append(z["video"])
    return contact_sheet(videos, path, frames_per_row=frames_per_row)
