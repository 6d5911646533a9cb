"""What the benchmark compares: generators of frames from a context (TECO, the latent diffusion
baseline), timed with compilation apart, and the copy-last baseline."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from teco_jax import rollout as rollout_lib

METHODS = ("teco", "teco_short", "copy_last")  # and "diffusion" (after "teco") with --diffusion


def copy_last_frame(context_BCHW3: np.ndarray, num_frames: int) -> np.ndarray:
    """The copy baseline: the last context frame, repeated num_frames times: (B, num_frames, H, W, 3)."""
    last = context_BCHW3[:, -1:]
    return np.repeat(last, num_frames, axis=1)


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
