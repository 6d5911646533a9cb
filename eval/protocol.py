"""The benchmark's protocol: how many frames in and out, and how many videos in how many groups.

Frame counts (`Protocol`, spec §6) come from a dataset preset: "dmlab" (64×64 frames) and
"minecraft" (128×128) share the paper's numbers, "cpu" scales them to the CPU worlds'
128-frame, 32×32 episodes. Video counts come from a video protocol:

    paper   1,024 videos in 4 groups of 256: every metric, FVD included, is computed per group
            and reported as mean ± std over the groups (TECO's evaluation)
    small   256 videos in 4 groups of 64: the same, for machines without an accelerator

`--num_videos` and `--group_size` set any other split (not with `--protocol paper`).
"""

from __future__ import annotations

import argparse
import dataclasses

from eval.fvd import MIN_FRAMES, MIN_VIDEOS
from teco_jax.errors import UserError

FVD_RELIABLE_VIDEOS = 256  # below this many videos per group FVD is only indicative (biased, high variance)
VIDEO_PROTOCOLS = {"paper": (1024, 256), "small": (256, 64)}  # name: (videos, videos per group)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Frame counts of the benchmark (spec §6)."""

    context: int = 144
    predict: int = 156
    uncond_context: int = 36
    uncond_predict: int = 264
    short_window: int = 16

    @property
    def length(self) -> int:
        """Frames per episode the benchmark reads."""
        return max(self.context + self.predict, self.uncond_context + self.uncond_predict)


# Both TECO datasets use the same protocol (spec §6); they differ in frame size. "cpu" is the
# protocol scaled down to the CPU-scale world's 128-frame episodes (`data_gen.maze --preset
# cpu`, 32x32): 64 context + 64 predicted frames, all inside the cpu TECO's 128-frame window,
# and a short window of 16 frames, so revisits of places seen only in context frames [0, 48)
# test memory.
PRESETS = {"dmlab": (Protocol(), 64), "minecraft": (Protocol(), 128),
           "cpu": (Protocol(context=64, predict=64, uncond_context=16, uncond_predict=112, short_window=16), 32)}


def default_preset(resolution: int) -> str:
    """The preset whose frame size matches the VQ-GAN's (the nearest one)."""
    return min(PRESETS, key=lambda name: abs(PRESETS[name][1] - resolution))


def resolve_protocol(args: argparse.Namespace, resolution: int) -> tuple[str, Protocol]:
    """(preset name, Protocol): the preset's numbers with the flags given on the command line."""
    preset = args.preset or default_preset(resolution)
    base, _ = PRESETS[preset]
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Protocol) if getattr(args, f.name) is not None}
    return preset, dataclasses.replace(base, **given)


def resolve_videos(protocol: str, num_videos: int | None, group_size: int | None) -> tuple[int, int]:
    """(num_videos, group_size) of a video protocol, with the flags given; UserError when a flag
    contradicts the paper's protocol (whose numbers are what makes it the paper's)."""
    n, g = VIDEO_PROTOCOLS[protocol]
    if protocol == "paper" and (num_videos not in (None, n) or group_size not in (None, g)):
        raise UserError(f"--protocol paper is {n} videos in groups of {g}; drop --num_videos/--group_size, "
                        f"or use --protocol small with them")
    return (n if num_videos is None else num_videos), (g if group_size is None else group_size)


def check_fvd_videos(num_videos: int, group_size: int, fvd: bool) -> None:
    """UserError if FVD is on with groups of fewer videos than the Fréchet distance can use."""
    per_group = min(num_videos, group_size)
    if fvd and per_group < MIN_VIDEOS:
        raise UserError(f"--num_videos {num_videos} in groups of {group_size} is too few for FVD: it fits a "
                        f"Gaussian (mean and covariance) to the I3D features of each group's videos, which needs "
                        f"at least {MIN_VIDEOS} ({FVD_RELIABLE_VIDEOS} for a reliable value); pass --num_videos and "
                        f"--group_size of {MIN_VIDEOS} or more, or --no_fvd")


def check_protocol(p: Protocol, fvd: bool) -> None:
    """ValueError naming the first impossible setting."""
    for name in ("context", "predict", "uncond_context", "uncond_predict"):
        if getattr(p, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(p, name)}")
    if not 2 <= p.short_window <= p.context:
        raise ValueError(f"--short_window must lie in [2, --context={p.context}], got {p.short_window}")
    if fvd:
        clip = p.uncond_context + p.uncond_predict
        if clip < MIN_FRAMES:
            raise ValueError(f"FVD needs clips of at least {MIN_FRAMES} frames (I3D), but --uncond_context + "
                             f"--uncond_predict = {clip}; use --no_fvd or longer clips")
