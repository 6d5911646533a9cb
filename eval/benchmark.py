"""The long-range consistency benchmark of a trained TECO (spec §6), with baselines, in one run.

    python -m eval.benchmark --checkpoint runs/teco --data data/maze_tfds --out runs/bench \\
        [--protocol small|paper] [--batch_size 8] [--seed 0] [--preset dmlab|minecraft|cpu] \\
        [--context 144] [--predict 156] [--uncond_context 36] [--uncond_predict 264] \\
        [--short_window 16] [--fvd | --no_fvd] [--num_grids 2] [--diffusion runs/diffusion]

On the first --num_videos episodes of the --split (default test) of a raw-frame TFDS
dataset (`python -m teco_jax.data.build`):

a. Action-conditioned rollouts: `context` ground-truth frames in, `predict` frames out,
   with the episodes' actions. PSNR, SSIM and LPIPS (AlexNet) per predicted frame
   (`teco_jax.metrics`); per video averaged over its predicted frames; reported as mean ± std
   over groups of `group_size` videos (the mean of each group's videos; std with ddof 0)
   and as per-horizon curves (metric vs frame index, mean over videos, ± std over groups).
   A model whose window (its training length, data.seq_len) is shorter than `context` gets
   only the last `window` context frames; this is printed and written into the report.
b. Baselines in the same run, scored the same way: `copy_last` (every predicted frame is the
   last context frame) and `teco_short` (the same TECO given only the last `short_window`
   context frames, its window restricted to `short_window` frames, sliding).
c. Revisit consistency: predicted frames split by `teco_jax.revisit.revisit_mask` against the
   whole context (the dataset's poses) into revisited and new places; every metric of every
   method on both (frames pooled per group; mean ± std over groups that have such frames).
   A third set, "memory" (`teco_jax.revisit.memory_mask`), holds the revisits of places that only
   the context frames before the short window showed: the long-range memory test.
d. Unconditional rollouts: `uncond_context` frames in, `uncond_predict` out, with the null
   action (the episodes' actions if the model never saw the null action in training); with
   --fvd, FVD (`eval.fvd`) between the real and generated whole clips of each group, mean ±
   std over the groups (and, for reference, one FVD over all videos).
e. Sampling speed: generated frames per second (TECO sampling + VQ-GAN decoding, batched),
   with compilation timed separately, for TECO and the short-window variant.
f. With --diffusion DIR: the latent video diffusion baseline (`DiffusionWorldModel`) on the
   same videos, contexts and actions, as one more method ("diffusion") of a-d and e. Its
   sampler conditions on only the last model.sampling.context_frames context frames (a
   note says so). Its speed beside TECO's, and the ratio "TECO : diffusion = X : 1" of
   their action-conditioned frames per second, printed and in the report.

The dataset preset (dmlab: 64x64 frames, minecraft: 128x128, cpu: 32x32 and 128-frame
episodes; by default chosen from the VQ-GAN's resolution) sets the frame counts of spec §6,
--protocol the number of videos and groups (paper: 1,024 in 4 groups of 256; small: 256 in
4 groups of 64); explicit flags override them (`eval.protocol`). The pieces: `eval.protocol`,
`eval.test_set`, `eval.methods` (what is compared), `teco_jax.metrics`, `eval.stats`; this
module (about 470 lines) keeps the run itself: one `Benchmark` object that rolls out every
method batch by batch, scores it and writes the results, and the CLI.

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
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from eval import fvd as fvd_lib
from eval import plots, report
from eval.methods import (METHODS, DiffusionGenerator, TecoGenerator, TimedRollout, copy_last_frame,
                          unconditional_actions)
from eval.protocol import (FVD_RELIABLE_VIDEOS, PRESETS, VIDEO_PROTOCOLS, Protocol, check_fvd_videos, check_protocol,
                           resolve_protocol, resolve_videos)
from eval.stats import curve_stats, fvd_group_stats, group_stats, masked_stats
from eval.test_set import TestSet, pad_batch
from teco_jax import rollout as rollout_lib
from teco_jax.errors import UserError
from teco_jax.metrics import frame_metrics
from teco_jax.revisit import memory_mask, revisit_mask
from teco_jax.sample import check_model_actions, comparison, write_videos

METRICS = ("psnr", "ssim", "lpips")


# ----------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eval.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="TECO training workdir (config.json + checkpoints/) or a bundle (teco_jax.bundle)")
    p.add_argument("--data", type=Path, required=True, help="raw-frame TFDS dataset dir (teco_jax.data.build)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--protocol", choices=sorted(VIDEO_PROTOCOLS), default="small",
                   help="how many videos in how many groups: paper = 1,024 in 4 groups of 256 (TECO's), "
                        "small = 256 in 4 groups of 64 (for CPUs)")
    p.add_argument("--num_videos", type=int, default=None,
                   help="episodes evaluated, the first N of the split (default: the --protocol's)")
    p.add_argument("--group_size", type=int, default=None,
                   help="videos per group for mean ± std, dividing --num_videos (default: the --protocol's)")
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
    args.num_videos, args.group_size = resolve_videos(args.protocol, args.num_videos, args.group_size)
    for name in ("num_videos", "group_size", "batch_size", "fvd_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    check_fvd_videos(args.num_videos, args.group_size, args.fvd)  # a UserError: before the divisibility check
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
            bar.set_description("FVD (I3D features)")
            self.fvd_feats["real"].append(fvd_lib.i3d_features(real[:n], batch_size=self.args.fvd_batch_size))
            for kind, fake in fakes.items():
                clip = np.concatenate([real[:n, :c], fake[:n]], axis=1)
                self.fvd_feats[kind].append(fvd_lib.i3d_features(clip, batch_size=self.args.fvd_batch_size))
            bar.update((1 + len(fakes)) * n * (c + pr))

    # ------------------------------------------------------------- the run
    def run(self) -> dict:
        from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

        p, wm = self.p, self.wm
        if wm.config.model.use_actions:
            tfds_meta.check_action_values(self.actions[:, :p.length], wm.num_actions,
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
        if self.args.fvd and self.args.group_size < FVD_RELIABLE_VIDEOS:
            self.note(f"FVD per group of {self.args.group_size} videos is only indicative (biased upward and "
                      f"noisy below {FVD_RELIABLE_VIDEOS}); compare it only with runs on groups as large.")
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
        from teco_jax.data import tfds_meta  # deferred: tensorflow_datasets takes seconds to import

        p, d = self.p, self.dwm
        if d.config.model.use_actions:
            tfds_meta.check_action_values(self.actions[:, :p.length], d.num_actions,
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
        p, wm, g = self.p, self.wm, self.args.group_size
        fvd = {m: None for m in ("teco", "diffusion") if m in self.methods}
        if self.args.fvd:
            real = np.concatenate(self.fvd_feats["real"])
            for method, kind in (("teco", "uncond"), ("diffusion", "diffusion_uncond")):
                if kind in self.fvd_feats:
                    fvd[method] = fvd_group_stats(real, np.concatenate(self.fvd_feats[kind]), g)
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
                         "context_truncated": p.context > wm.window, "videos": self.args.protocol,
                         "num_videos": self.n, "group_size": g,
                         "num_groups": self.n // g, "batch_size": self.bs, "seed": self.args.seed,
                         "sampler": dataclasses.asdict(self.sampler), "uncond_actions": self.uncond_actions,
                         "fvd": bool(self.args.fvd), "std": "over groups of group_size videos, ddof 0",
                         "fvd_per": "group (real group j vs generated group j), mean ± std over groups",
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
            "unconditional": {"fvd": fvd["teco"] and fvd["teco"]["mean"],
                              "fvd_per_method": {m: v and v["mean"] for m, v in fvd.items()},
                              "fvd_groups": fvd, "num_videos": self.n,
                              "clip_frames": p.uncond_context + p.uncond_predict, "actions": self.uncond_actions},
            "speed": speed,
            **({} if self.dwm is None else {"diffusion": self.diffusion_info(speed)}),
        }

    def diffusion_info(self, speed: dict) -> dict:
        """The diffusion baseline's checkpoint, protocol and its speed against TECO's."""
        from teco_jax import world_model  # deferred: keeps `import eval.benchmark` free of the model stack

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
    written = []
    for kind, rows in grids.items():
        for j, row in enumerate(rows):
            write_videos(out / f"{kind}_{j}", row, fps)
            written.append(f"{kind}_{j}")
    return written


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from teco_jax.world_model import WorldModel  # deferred: arguments are checked before the model stack loads

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
            from teco_jax.diffusion.world_model import DiffusionWorldModel  # deferred: only with --diffusion

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
