"""Metrics and pictures: TensorBoard event files (tensorboardX, no TensorFlow), a JSONL
log, PNG image grids. Only process 0 writes; other processes get a no-op writer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import jax
import numpy as np
from PIL import Image


class MetricWriter:
    """Writes scalars to WORKDIR/metrics.jsonl and TensorBoard, images to WORKDIR/images/."""

    def __init__(self, workdir: Path | str, enabled: bool | None = None):
        self.workdir = Path(workdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.workdir.mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
            self._jsonl = open(self.workdir / "metrics.jsonl", "a")

    def scalars(self, step: int, metrics: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        values = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        for k, v in values.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")
        self._jsonl.flush()

    def image(self, step: int, name: str, image_HWC: np.ndarray) -> Path | None:
        """Save a uint8 (H, W, 3) image as WORKDIR/images/<name>_<step>.png and to TensorBoard."""
        if not self.enabled:
            return None
        path = self.workdir / "images" / f"{name}_{int(step):07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_HWC).save(path)
        self._tb.add_image(name, image_HWC, step, dataformats="HWC")
        return path

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (float) to uint8 [0, 255]."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def image_grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Stack rows of images: each row (N, H, W, 3) uint8 -> one (R*(H+pad), N*(W+pad), 3) image."""
    n, h, w, _ = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for i, img in enumerate(row):
            y, x = pad + r * (h + pad), pad + i * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid
