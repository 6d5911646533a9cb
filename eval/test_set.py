"""The benchmark's test videos: the first episodes of a split of a raw-frame TFDS dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TestSet:
    """The first `num` episodes of a split of a raw-frame TFDS dataset, cut to `length` frames.

    Actions (N, L) and poses (N, L, 3) (None if the dataset has none) are read up front;
    frames batch by batch (`video`), so memory holds one batch of videos at a time.
    """

    def __init__(self, data_dir: Path, split: str, num: int, length: int):
        from teco_jax.data import tfds_read  # deferred: tensorflow_datasets takes seconds to import

        meta, self.source = tfds_read.load_frame_split(data_dir, split)
        self.length, self.num = length, num
        if num > len(self.source):
            raise ValueError(f"{data_dir}: {meta.name}/{split} has {len(self.source)} episodes, fewer than the "
                             f"{num} videos the protocol needs (--num_videos, or --protocol paper's 1,024)")
        if length > meta.min_length:
            raise ValueError(f"the protocol needs episodes of {length} frames (max(context + predict, "
                             f"uncond_context + uncond_predict)); the shortest episode of {meta.name} has "
                             f"{meta.min_length}")
        self.frame_shape = tuple(meta.frame_shape)
        episodes = [self.source[i] for i in range(num)]
        self.actions = np.stack([np.asarray(ep["actions"][:length], np.int32) for ep in episodes])
        self.pose = None
        if "pose" in episodes[0]:
            self.pose = np.stack([np.asarray(ep["pose"][:length], np.float32) for ep in episodes])

    def video(self, start: int, stop: int) -> np.ndarray:
        """uint8 (stop - start, L, H, W, 3): the frames of episodes start..stop-1."""
        return np.stack([np.asarray(self.source[i]["video"][:self.length], np.uint8) for i in range(start, stop)])


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """x with its last row repeated up to `size` rows (keeps one compiled shape)."""
    return x if len(x) == size else np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
