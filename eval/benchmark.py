"""The long-range consistency benchmark of a trained TECO (spec §6), with baselines, in one run.

    python -m eval.benchmark --checkpoint runs/teco --data data/maze_tfds --out runs/bench \\
        [--num_videos 256] [--group_size 64] [--batch_size 8] [--seed 0] [--preset dmlab] \\
        [--context 144] [--predict 156] [--uncond_context 36] [--uncond_predict 264] \\
        [--short_window 16] [--fvd | --no_fvd] [--num_grids 2] [--diffusion runs/diffusion]

On the first --num_videos episodes of the --split (default test) of a raw-frame TFDS
dataset (`python -m teco_jax.data.build`):

a. Action-conditioned rollouts: `context` ground-truth frames in, `predict` frames out,
   with the episodes' actions. PSNR, SSIM and LPIPS (AlexNet) per predicted frame
   (`eval.metrics`); per video averaged over its predicted frames; reported as mean ± std
   over groups of `group_size` videos (the mean of each group's videos; std with ddof 0)
   and as per-horizon curves (metric vs frame index, mean over videos, ± std over groups).
   A model whose window (its training length, data.seq_len) is shorter than `context` gets
   only the last `window` context frames; this is printed and written into the report.
b. Baselines in the same run, scored the same way: `copy_last` (every predicted frame is the
   last context frame) and `teco_short` (the same TECO given only the last `short_window`
   context frames, its window restricted to `short_window` frames, sliding).
c. Revisit consistency: predicted frames split by `eval.revisit.revisit_mask` against the
   whole context (the dataset's poses) into revisited and new places; every metric of every
   method on both (frames pooled per group; mean ± std over groups that have such frames).
   A third set, "memory" (`eval.revisit.memory_mask`), holds the revisits of places that only
   the context frames before the short window showed: the long-range memory test.
d. Unconditional rollouts: `uncond_context` frames in, `uncond_predict` out, with the null
   action (the episodes' actions if the model never saw the null action in training); with
   --fvd, FVD (`eval.fvd`) between the real and generated whole clips.
e. Sampling speed: generated frames per second (TECO sampling + VQ-GAN decoding, batched),
   with compilation timed separately, for TECO and the short-window variant.
f. With --diffusion DIR: the latent video diffusion baseline (`DiffusionWorldModel`) on the
   same videos, contexts and actions, as one more method ("diffusion") of a-d and e. Its
   sampler conditions on only the last model.sampling.context_frames context frames (a
   note says so). Its speed beside TECO's, and the ratio "TECO : diffusion = X : 1" of
   their action-conditioned frames per second, printed and in the report.

The dataset preset (dmlab: 64x64 frames, minecraft: 128x128; by default chosen from the
VQ-GAN's resolution) sets the protocol numbers of spec §6; explicit flags override them.

Writes to --out:
    results.json              every number, the protocol, config, checkpoint, date, device
    report.md                 the tables (eval.report renders it; it also merges several runs)
    horizon_<metric>.png      metric vs frame index, one line per method
    revisit.png               revisited vs new places, per metric and method
    <kind>_<j>.mp4/.gif       real | generated | error for the first --num_grids videos
                              (kind: teco, teco_short, uncond, diffusion, diffusion_uncond)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax import rollout as rollout_lib

METRICS = ("psnr", "ssim", "lpips")
METHODS = ("teco", "teco_short", "copy_last")  # and "diffusion" (after "teco") with --diffusion
FVD_RELIABLE_VIDEOS = 256  # below this FVD is only indicative (biased, high variance)


# ----------------------------------------------------------------- protocol

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


def check_fvd_videos(num_videos: int, fvd: bool) -> None:
    """UserError if FVD is on with fewer videos than the Fréchet distance can use."""
    from eval.fvd import MIN_VIDEOS
    from teco_jax.errors import UserError

    if fvd and num_videos < MIN_VIDEOS:
        raise UserError(f"--num_videos {num_videos} is too few for FVD: it fits a Gaussian (mean and covariance) "
                        f"to the I3D features of each set of videos, which needs at least {MIN_VIDEOS} "
                        f"(256 for a reliable value); pass --num_videos {MIN_VIDEOS} or more, or --no_fvd")


def check_protocol(p: Protocol, fvd: bool) -> None:
    """ValueError naming the first impossible setting."""
    for name in ("context", "predict", "uncond_context", "uncond_predict"):
        if getattr(p, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(p, name)}")
    if not 2 <= p.short_window <= p.context:
        raise ValueError(f"--short_window must lie in [2, --context={p.context}], got {p.short_window}")
    if fvd:
        from eval.fvd import MIN_FRAMES

        clip = p.uncond_context + p.uncond_predict
        if clip < MIN_FRAMES:
            raise ValueError(f"FVD needs clips of at least {MIN_FRAMES} frames (I3D), but --uncond_context + "
                             f"--uncond_predict = {clip}; use --no_fvd or longer clips")


# ----------------------------------------------------------------- data

class TestSet:
    """The first `num` episodes of a split of a raw-frame TFDS dataset, cut to `length` frames.

    Actions (N, L) and poses (N, L, 3) (None if the dataset has none) are read up front;
    frames batch by batch (`video`), so memory holds one batch of videos at a time.
    """

    def __init__(self, data_dir: Path, split: str, num: int, length: int):
        from teco_jax.data import tfds_io

        meta, self.source = tfds_io.load_frame_split(data_dir, split)
        self.length, self.num = length, num
        if num > len(self.source):
            raise ValueError(f"--num_videos {num} is more than the {len(self.source)} episodes of "
                             f"{meta.name}/{split}")
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


# ----------------------------------------------------------------- metrics

@functools.partial(jax.jit, static_argnames=("lpips_batch",))
def _frame_metrics(lpips_params, real, fake, lpips_batch: int):
    from eval import metrics

    x = real.astype(jnp.float32) / 255.0
    y = fake.astype(jnp.float32) / 255.0
    return {"psnr": metrics.psnr(x, y), "ssim": metrics.ssim(x, y),
            "lpips": metrics.lpips(x, y, "alexnet", params=lpips_params, batch_size=lpips_batch)}


def frame_metrics(real_BTHW3: np.ndarray, fake_BTHW3: np.ndarray) -> dict[str, np.ndarray]:
    """PSNR, SSIM, LPIPS (AlexNet) of every frame of uint8 videos: {metric: (B, T) float64}."""
    from eval import metrics

    if real_BTHW3.shape != fake_BTHW3.shape:
        raise ValueError(f"frame_metrics: shapes differ: {real_BTHW3.shape} vs {fake_BTHW3.shape}")
    out = _frame_metrics(metrics.lpips_model("alexnet").params, jnp.asarray(real_BTHW3), jnp.asarray(fake_BTHW3),
                         lpips_batch=256)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def copy_last_frame(context_BCHW3: np.ndarray, num_frames: int) -> np.ndarray:
    """The copy baseline: the last context frame, repeated num_frames times: (B, num_frames, H, W, 3)."""
    last = context_BCHW3[:, -1:]
    return np.repeat(last, num_frames, axis=1)


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


# ----------------------------------------------------------------- generation

class TecoGenerator:
    """TECO rollouts with a given window: context codes in, generated frames out (VQ-GAN decoded)."""

    def __init__(self, wm, window: int, sampler):
        self.wm, self.window, self.sampler = wm, window, sampler

    def _call(self, codes, actions, key, num_frames: int, lower: bool = False):
        fn = rollout_lib.rollout.lower if lower else rollout_lib.rollout
        return fn(self.wm.teco, self.wm.vq_embeddings, self.wm.put_batch(codes), self.wm.put_batch(actions), key,
                  num_frames=num_frames, window=self.window, sampler=self.sampler)

    def compile(self, codes, actions, key, num_frames: int) -> float | None:
        """Compile the rollout (ahead of time) and the VQ-GAN decoder: seconds, None if AOT lowering is
        unavailable (the rollout then compiles inside the first timed call)."""
        t0 = time.perf_counter()
        try:
            self._call(codes, actions, key, num_frames, lower=True).compile()
            aot = True
        except Exception:  # noqa: BLE001
            aot = False
        b, c = codes.shape[:2]
        warm = min(self.wm.chunk, b * (num_frames - c))  # the decoder's chunk shape (WorldModel.decode)
        self.wm.decode(np.zeros((1, warm) + tuple(codes.shape[2:]), np.int32))
        return time.perf_counter() - t0 if aot else None

    def __call__(self, codes, actions, key, num_frames: int) -> np.ndarray:
        out = np.asarray(self._call(codes, actions, key, num_frames))
        return self.wm.decode(out[:, codes.shape[1]:])


class DiffusionGenerator:
    """Latent diffusion rollouts (`DiffusionWorldModel`): context latents in, generated frames out."""

    def __init__(self, dwm):
        self.dwm, self.window = dwm, dwm.window

    def _actions(self, actions):
        """The model takes None for the null action (and for a model trained without actions)."""
        null = (actions == self.dwm.num_actions).all()
        return None if null or not self.dwm.config.model.use_actions else actions

    def compile(self, latents, actions, key, num_frames: int) -> float:
        """Every window of a rollout shares one compiled sampler: a one-window rollout run twice,
        the first call's extra time is the compilation (plus the decoder's warm-up)."""
        one = min(num_frames, self.window)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            self.dwm.rollout_latents(latents, self._actions(actions[:, :one]), one, key)
            times.append(time.perf_counter() - t0)
        b, c = latents.shape[:2]
        warm = min(self.dwm.chunk, b * (num_frames - c))  # the decoder's chunk shape
        t0 = time.perf_counter()
        self.dwm.decode(np.zeros((1, warm) + tuple(latents.shape[2:]), np.float32))
        return max(times[0] - times[1], 0.0) + time.perf_counter() - t0

    def __call__(self, latents, actions, key, num_frames: int) -> np.ndarray:
        z = self.dwm.rollout_latents(latents, self._actions(actions), num_frames, key)
        return self.dwm.decode(z[:, latents.shape[1]:])


@dataclasses.dataclass
class TimedRollout:
    """Rollouts of a generator (`TecoGenerator`, `DiffusionGenerator`), timed, compilation apart.

    A generator has `window` (frames per step of its rollout), `compile(context, actions,
    key, num_frames)` (compiles what these shapes need; returns its seconds, or None if the
    compilation could not be separated) and `__call__(context, actions, key, num_frames)`
    -> the generated frames (B, num_frames - C, H, W, 3) uint8. The context comes encoded
    (codes or latents), so encoding is not timed. `seconds` counts sampling + decoding after
    compilation, `compile_s` the compilation (None: it is inside `seconds`).
    """

    gen: object
    frames: int = 0
    seconds: float = 0.0
    compile_s: float | None = 0.0
    _compiled: set = dataclasses.field(default_factory=set)

    def generate(self, context: np.ndarray, actions_BL: np.ndarray, key, num_frames: int) -> np.ndarray:
        shape = (context.shape, num_frames)
        if shape not in self._compiled:
            self._compiled.add(shape)
            spent = self.gen.compile(context, actions_BL, key, num_frames)
            self.compile_s = None if spent is None or self.compile_s is None else self.compile_s + spent
        t0 = time.perf_counter()
        frames = self.gen(context, actions_BL, key, num_frames)
        self.seconds += time.perf_counter() - t0
        self.frames += frames.shape[0] * frames.shape[1]
        return frames

    def speed(self) -> dict:
        fps = self.frames / self.seconds if self.seconds > 0 else None
        return {"frames_per_s": fps, "generated_frames": self.frames, "seconds": self.seconds,
                "compile_s": self.compile_s, "window": self.gen.window,
                "compile_included": self.compile_s is None}


def unconditional_actions(config) -> tuple[str, str | None]:
    """("null" or "dataset", a note or None): which actions the unconditional rollouts take."""
    m = config.model
    if m.use_actions and not m.get("action_dropout", 0):
        return "dataset", ("this TECO never saw the null action in training (model.action_dropout=0): the "
                           "'unconditional' rollouts take the episodes' actions instead")
    return "null", None


# ----------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eval.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="TECO training workdir (config.json + checkpoints/) or a bundle (teco_jax.bundle)")
    p.add_argument("--data", type=Path, required=True, help="raw-frame TFDS dataset dir (teco_jax.data.build)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--num_videos", type=int, default=256, help="episodes evaluated (the first N of the split)")
    p.add_argument("--group_size", type=int, default=64, help="videos per group for mean ± std (divides N)")
    p.add_argument("--batch_size", type=int, default=8, help="videos generated at once")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--split", default="test", help="dataset split")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="dataset preset of the protocol numbers (default: from the VQ-GAN's resolution)")
    for f in dataclasses.fields(Protocol):
        p.add_argument(f"--{f.name}", type=int, default=None, help=f"default: the preset's ({f.default})")
    fvd = p.add_mutually_exclusive_group()
    fvd.add_argument("--fvd", dest="fvd", action="store_true", default=True,
                     help="compute FVD on the unconditional clips (the default; I3D is slow on CPUs)")
    fvd.add_argument("--no_fvd", "--no-fvd", dest="fvd", action="store_false", help="skip FVD")
    p.add_argument("--fvd_batch_size", type=int, default=4,
                   help="clips per I3D call (memory grows with it: I3D's activations for one 300-frame "
                        "clip take several hundred MB)")
    p.add_argument("--num_grids", type=int, default=2, help="videos written as real | generated | error grids")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the grid videos")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    rollout_lib.add_sampler_flags(p)
    p.add_argument("--vqgan", type=Path, default=None, help="VQ-GAN workdir (default: the one TECO records)")
    p.add_argument("--diffusion", type=Path, default=None,
                   help="also evaluate this latent diffusion baseline (its training workdir), on the same videos")
    p.add_argument("--diffusion_step", type=int, default=None, help="its checkpoint step (default: the latest)")
    args = p.parse_args(argv)
    for name in ("num_videos", "group_size", "batch_size", "fvd_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    check_fvd_videos(args.num_videos, args.fvd)  # a UserError: before the group size, which it would trip
    if args.num_videos % args.group_size:
        p.error(f"--num_videos {args.num_videos} is not a multiple of --group_size {args.group_size}")
    if args.num_grids < 0:
        p.error("--num_grids must be >= 0")
    return args


def device_info() -> dict:
    d = jax.devices()[0]
    return {"platform": d.platform, "kind": d.device_kind, "count": jax.device_count(),
            "host_cpus": os.cpu_count(), "machine": platform.machine(), "jax": jax.__version__}


def loud(msg: str) -> None:
    """A message that must not be missed, framed."""
    bar = "!" * 78
    print(f"{bar}\n! NOTE: {msg}\n{bar}", flush=True)


class Benchmark:
    """One benchmark run: holds the model, the data and everything measured."""

    def __init__(self, args: argparse.Namespace, wm, protocol: Protocol, preset: str, data: TestSet, dwm=None):
        self.args, self.wm, self.dwm, self.p, self.preset = args, wm, dwm, protocol, preset
        self.data, self.actions, self.pose = data, data.actions, data.pose
        self.n = data.num
        self.bs = min(args.batch_size, self.n)
        self.notes: list[str] = []
        self.key = jax.random.key(args.seed)
        self.sampler = sampler = rollout_lib.sampler_from_args(wm.sampler, args)
        self.rollouts = {"teco": TimedRollout(TecoGenerator(wm, wm.window, sampler)),
                         "teco_short": TimedRollout(TecoGenerator(wm, protocol.short_window, sampler)),
                         "uncond": TimedRollout(TecoGenerator(wm, wm.window, sampler))}
        self.methods = list(METHODS)
        if dwm is not None:  # the latent diffusion baseline: rolled out on the same videos, scored the same
            self.methods.insert(1, "diffusion")
            self.rollouts.update(diffusion=TimedRollout(DiffusionGenerator(dwm)),
                                 diffusion_uncond=TimedRollout(DiffusionGenerator(dwm)))
        self.per_frame = {m: {k: np.zeros((self.n, protocol.predict)) for k in METRICS} for m in self.methods}
        self.grids: dict[str, list[np.ndarray]] = {kind: [] for kind in self.rollouts}
        self.fvd_feats = {"real": [], **{kind: [] for kind in ("uncond", "diffusion_uncond") if kind in self.rollouts}}
        self.uncond_actions = self.diffusion_uncond_actions = "null"

    # ------------------------------------------------------------- pieces
    def note(self, msg: str, shout: bool = False) -> None:
        self.notes.append(msg)
        if shout:
            loud(msg)
        else:
            print(f"note: {msg}", flush=True)

    def model_context(self, context: int) -> int:
        return min(context, self.wm.window)

    def diffusion_context(self, context: int) -> int:
        """Context frames the diffusion sampler conditions its first window on."""
        return min(context, self.dwm.sampler.context_frames)

    def _keep_grids(self, kind: str, start: int, real: np.ndarray, fake: np.ndarray, context: int) -> None:
        """Keep (real, real context + generated) of the first --num_grids videos for the grid videos."""
        from teco_jax.sample import comparison

        for j in range(len(fake)):
            if start + j < self.args.num_grids:
                full = np.concatenate([real[j, :context], fake[j]])
                self.grids[kind].append(comparison(real[j, :len(full)], full, context))

    def conditioned_batch(self, i: int, start: int, bar) -> None:
        """Rollouts of one batch with the episodes' actions: TECO, TECO short, copy-last; metrics."""
        c, pr = self.p.context, self.p.predict
        n = min(self.bs, self.n - start)
        real = pad_batch(self.data.video(start, start + n)[:, :c + pr], self.bs)
        episode_acts = acts = pad_batch(self.actions[start:start + n, :c + pr], self.bs)
        if not self.wm.config.model.use_actions:
            acts = np.full_like(acts, self.wm.num_actions)
        target = real[:, c:]
        k_teco, k_short = self.model_context(c), self.p.short_window
        ctx_codes = self.wm.encode(real[:, c - max(k_teco, k_short):c])
        fakes = {}
        for method, k, salt in (("teco", k_teco, 0), ("teco_short", k_short, 1)):
            bar.set_description(f"{method} (action-conditioned)")
            key = jax.random.fold_in(jax.random.fold_in(self.key, salt), i)
            fakes[method] = self.rollouts[method].generate(ctx_codes[:, -k:], acts[:, c - k:], key, k + pr)
            bar.update(n * pr)
        if self.dwm is not None:
            bar.set_description("diffusion (action-conditioned)")
            k = self.diffusion_context(c)
            key = jax.random.fold_in(jax.random.fold_in(self.key, 3), i)
            fakes["diffusion"] = self.rollouts["diffusion"].generate(self.dwm.encode(real[:, c - k:c]),
                                                                     episode_acts[:, c - k:], key, k + pr)
            bar.update(n * pr)
        fakes["copy_last"] = copy_last_frame(real[:, :c], pr)
        for method, fake in fakes.items():
            scores = frame_metrics(target, fake)
            for k in METRICS:
                self.per_frame[method][k][start:start + n] = scores[k][:n]
        for kind in ("teco", "teco_short", "diffusion"):
            if kind in fakes:
                self._keep_grids(kind, start, real[:n], fakes[kind][:n], c)

    def unconditional_batch(self, i: int, start: int, bar) -> None:
        """Unconditional rollouts of one batch (and I3D features of real and generated clips)."""
        c, pr = self.p.uncond_context, self.p.uncond_predict
        n = min(self.bs, self.n - start)
        real = pad_batch(self.data.video(start, start + n)[:, :c + pr], self.bs)
        if self.uncond_actions == "null":
            acts = np.full(real.shape[:2], self.wm.num_actions, np.int32)
        else:
            acts = pad_batch(self.actions[start:start + n, :c + pr], self.bs)
        k = self.model_context(c)
        bar.set_description("unconditional")
        key = jax.random.fold_in(jax.random.fold_in(self.key, 2), i)
        fakes = {"uncond": self.rollouts["uncond"].generate(self.wm.encode(real[:, c - k:c]), acts[:, c - k:], key,
                                                            k + pr)}
        bar.update(n * pr)
        if self.dwm is not None:
            bar.set_description("diffusion (unconditional)")
            k = self.diffusion_context(c)
            if self.diffusion_uncond_actions == "null":
                acts = np.full(real.shape[:2], self.dwm.num_actions, np.int32)
            else:
                acts = pad_batch(self.actions[start:start + n, :c + pr], self.bs)
            key = jax.random.fold_in(jax.random.fold_in(self.key, 4), i)
            fakes["diffusion_uncond"] = self.rollouts["diffusion_uncond"].generate(
                self.dwm.encode(real[:, c - k:c]), acts[:, c - k:], key, k + pr)
            bar.update(n * pr)
        for kind, fake in fakes.items():
            self._keep_grids(kind, start, real[:n], fake[:n], c)
        if self.args.fvd:
            from eval.fvd import i3d_features

            bar.set_description("FVD (I3D features)")
            self.fvd_feats["real"].append(i3d_features(real[:n], batch_size=self.args.fvd_batch_size))
            for kind, fake in fakes.items():
                clip = np.concatenate([real[:n, :c], fake[:n]], axis=1)
                self.fvd_feats[kind].append(i3d_features(clip, batch_size=self.args.fvd_batch_size))
            bar.update((1 + len(fakes)) * n * (c + pr))

    # ------------------------------------------------------------- the run
    def run(self) -> dict:
        from tqdm import tqdm

        from teco_jax.data import tfds_io

        p, wm = self.p, self.wm
        if wm.config.model.use_actions:
            tfds_io.check_action_values(self.actions[:, :p.length], wm.num_actions,
                                        f"model.num_actions of {self.args.checkpoint}", self.args.data)
        if p.context > wm.window:
            self.note(f"--context {p.context} is more than the model's window of {wm.window} frames "
                      f"(data.seq_len): TECO is given only the last {wm.window} context frames. All "
                      f"{p.predict} predicted frames are scored as usual; revisits are still judged against "
                      f"all {p.context} context frames.", shout=True)
        if p.uncond_context > wm.window:
            self.note(f"--uncond_context {p.uncond_context} is more than the model's window of {wm.window} "
                      f"frames: unconditional rollouts see only the last {wm.window} of them.", shout=True)
        if p.short_window >= wm.window:
            self.note(f"--short_window {p.short_window} is not shorter than the model's window ({wm.window}): "
                      f"the teco_short baseline is no restriction.")
        self.uncond_actions, why = unconditional_actions(wm.config)
        if why:
            self.note(why)
        if self.dwm is not None:
            self.diffusion_notes()
        if self.pose is None:
            self.note("the dataset has no poses: revisit consistency (revisited vs new places) is skipped")
        if self.args.fvd and self.n < FVD_RELIABLE_VIDEOS:
            self.note(f"FVD on {self.n} videos is only indicative (biased upward and noisy below "
                      f"{FVD_RELIABLE_VIDEOS}); compare it only with runs on as many videos.")
        if not self.args.fvd:
            self.note("FVD not computed (--no_fvd).")

        batches = list(range(0, self.n, self.bs))
        uncond_kinds = 1 if self.dwm is None else 2
        total = self.n * ((len(self.methods) - 1) * p.predict + uncond_kinds * p.uncond_predict)
        if self.args.fvd:
            total += (1 + uncond_kinds) * self.n * (p.uncond_context + p.uncond_predict)
        t0 = time.perf_counter()
        with tqdm(total=total, unit="frame", dynamic_ncols=True, desc="benchmark") as bar:
            for i, start in enumerate(batches):
                self.conditioned_batch(i, start, bar)
            for i, start in enumerate(batches):
                self.unconditional_batch(i, start, bar)
        return self.results(time.perf_counter() - t0)

    def diffusion_notes(self) -> None:
        from teco_jax.data import tfds_io

        p, d = self.p, self.dwm
        if d.config.model.use_actions:
            tfds_io.check_action_values(self.actions[:, :p.length], d.num_actions,
                                        f"model.num_actions of {self.args.diffusion}", self.args.data)
        k = self.diffusion_context(p.context)
        self.note(f"the diffusion baseline's sampler conditions on {d.sampler.context_frames} frames "
                  f"(model.sampling.context_frames): it is given only the last {k} of the {p.context} context "
                  f"frames (and the last {self.diffusion_context(p.uncond_context)} of the {p.uncond_context} "
                  f"unconditional ones), then generates windows of {d.window} frames, each conditioned on the "
                  f"last {d.sampler.context_frames} frames so far.", shout=True)
        if not d.config.model.use_actions:
            self.note("the diffusion baseline was trained without actions (model.use_actions=False): its "
                      "'action-conditioned' rollouts take the null action")
        self.diffusion_uncond_actions, why = unconditional_actions(d.config)
        if why:
            self.note(why.replace("this TECO", "the diffusion baseline"))

    def revisit(self) -> dict:
        if self.pose is None:
            return {"available": False, "note": "the dataset has no poses"}
        from eval.revisit import memory_mask, revisit_mask

        c, pr, g = self.p.context, self.p.predict, self.args.group_size
        mask = revisit_mask(self.pose[:, :c + pr], c)  # (N, predict)
        memory = memory_mask(self.pose[:, :c + pr], c, self.p.short_window)
        out = {"available": True, "max_angle_deg": 45.0, "fraction": float(mask.mean()),
               "revisited_frames": int(mask.sum()), "new_frames": int((~mask).sum()),
               "memory_frames": int(memory.sum()), "short_window": self.p.short_window,
               "fraction_per_video": mask.mean(axis=1).tolist(), "methods": {}}
        k = self.model_context(c)
        if k < c:  # how many of those places the model's (truncated) context still shows
            out["model_context"] = k
            out["revisited_in_model_context"] = int(revisit_mask(self.pose[:, c - k:c + pr], k).sum())
        for method in self.methods:
            out["methods"][method] = {k: {"revisited": masked_stats(v, mask, g), "new": masked_stats(v, ~mask, g),
                                          "memory": masked_stats(v, memory, g)}
                                      for k, v in self.per_frame[method].items()}
        return out

    def results(self, wall_s: float) -> dict:
        from teco_jax import world_model

        p, wm, g = self.p, self.wm, self.args.group_size
        fvd = {m: None for m in ("teco", "diffusion") if m in self.methods}
        if self.args.fvd:
            from eval.fvd import frechet_distance

            real = np.concatenate(self.fvd_feats["real"])
            for method, kind in (("teco", "uncond"), ("diffusion", "diffusion_uncond")):
                if kind in self.fvd_feats:
                    fvd[method] = frechet_distance(real, np.concatenate(self.fvd_feats[kind]))
        speed = {name: r.speed() for name, r in self.rollouts.items()}
        step = wm.step
        return {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "checkpoint": str(self.args.checkpoint.resolve()),
            "step": None if step is None else int(step),
            "data": str(self.args.data.resolve()),
            "split": self.args.split,
            "device": device_info(),
            "wall_time_s": wall_s,
            "protocol": {**dataclasses.asdict(p), "preset": self.preset, "model_window": wm.window,
                         "model_context": self.model_context(p.context),
                         "model_uncond_context": self.model_context(p.uncond_context),
                         "context_truncated": p.context > wm.window, "num_videos": self.n, "group_size": g,
                         "num_groups": self.n // g, "batch_size": self.bs, "seed": self.args.seed,
                         "sampler": dataclasses.asdict(self.sampler), "uncond_actions": self.uncond_actions,
                         "fvd": bool(self.args.fvd), "std": "over groups of group_size videos, ddof 0",
                         "metrics": "PSNR (dB), SSIM (11x11 Gaussian, sigma 1.5), LPIPS (AlexNet) on predicted "
                                    "frames, averaged over time then videos"},
            "config": wm.config.to_dict(),
            "vqgan_resolution": wm.frame_shape[0],
            "notes": self.notes,
            "methods": self.methods,
            "action_conditioned": {m: {k: group_stats(v.mean(axis=1), g) for k, v in self.per_frame[m].items()}
                                   for m in self.methods},
            "curves": {"frame_index": list(range(p.context, p.context + p.predict)),
                       **{m: {k: curve_stats(v, g) for k, v in self.per_frame[m].items()} for m in self.methods}},
            "revisit": self.revisit(),
            "unconditional": {"fvd": fvd["teco"], "fvd_per_method": fvd, "num_videos": self.n,
                              "clip_frames": p.uncond_context + p.uncond_predict, "actions": self.uncond_actions},
            "speed": speed,
            **({} if self.dwm is None else {"diffusion": self.diffusion_info(speed)}),
        }

    def diffusion_info(self, speed: dict) -> dict:
        """The diffusion baseline's checkpoint, protocol and its speed against TECO's."""
        from teco_jax import world_model

        d, a = self.dwm, self.args
        step = a.diffusion_step if a.diffusion_step is not None else world_model.checkpoint_steps(a.diffusion)[-1]
        teco_fps, diff_fps = speed["teco"]["frames_per_s"], speed["diffusion"]["frames_per_s"]
        return {"checkpoint": str(a.diffusion.resolve()), "step": int(step), "window": d.window,
                "context_frames": self.diffusion_context(self.p.context),
                "uncond_context_frames": self.diffusion_context(self.p.uncond_context),
                "sampler": dataclasses.asdict(d.sampler), "uncond_actions": self.diffusion_uncond_actions,
                "config": d.config.to_dict(),
                "speed_ratio": teco_fps / diff_fps if teco_fps and diff_fps else None}


def write_grids(out: Path, grids: dict[str, list[np.ndarray]], fps: float) -> list[str]:
    from teco_jax.sample import write_videos

    written = []
    for kind, rows in grids.items():
        for j, row in enumerate(rows):
            write_videos(out / f"{kind}_{j}", row, fps)
            written.append(f"{kind}_{j}")
    return written


def main(argv: list[str] | None = None) -> int:
    from teco_jax.errors import UserError

    try:
        args = parse_args(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from teco_jax.sample import check_model_actions
    from teco_jax.world_model import WorldModel

    try:
        for model_dir in (args.checkpoint, args.diffusion):  # from the configs, before loading any model
            if model_dir is not None:
                check_model_actions(model_dir, args.data)
        wm = WorldModel.load(args.checkpoint, step=args.step, vqgan_dir=args.vqgan)
        preset, protocol = resolve_protocol(args, wm.frame_shape[0])
        check_protocol(protocol, args.fvd)
        data = TestSet(args.data, args.split, args.num_videos, protocol.length)
        if data.frame_shape != wm.frame_shape:
            raise ValueError(f"the dataset's frames are {data.frame_shape}, the VQ-GAN's {wm.frame_shape}")
        dwm = None
        if args.diffusion is not None:
            from teco_jax.diffusion.world_model import DiffusionWorldModel

            dwm = DiffusionWorldModel.load(args.diffusion, step=args.diffusion_step)
            if dwm.frame_shape != data.frame_shape:
                raise ValueError(f"the dataset's frames are {data.frame_shape}, the diffusion baseline's "
                                 f"{dwm.frame_shape}")
    except (UserError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"benchmark: {args.checkpoint} on {args.num_videos} videos of {args.data}/{args.split}, preset {preset}: "
          f"{protocol}", flush=True)
    bench = Benchmark(args, wm, protocol, preset, data, dwm)
    try:
        results = bench.run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    from eval import plots, report

    results["files"] = {"plots": plots.write_all(results, args.out),
                        "videos": write_grids(args.out, bench.grids, args.fps)}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=True))
    (args.out / "report.md").write_text(report.render(results))
    print(report.summary_table(results))
    if "diffusion" in results:
        print(report.speed_ratio_line(results))
    print(f"wrote results.json, report.md, {len(results['files']['plots'])} plots and "
          f"{len(results['files']['videos'])} mp4/GIF grids to {args.out} ({results['wall_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
