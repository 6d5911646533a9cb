"""The model side of play mode: sessions over the KV-cached one-frame step, and their recordings.

A `Session` starts from the first C frames of a real episode (encoded by the VQ-GAN and
prefilled into TECO's KV cache, `rollout.start`) and generates one frame per action with
`rollout.next_frame`: h_t from the cached temporal transformer, z_t from the MaskGIT
prior, the frame's codes from the decoder, pixels from the VQ-GAN. Both functions are
jit-compiled once (batch 1, fixed window); past the trained window the cache slides, as in
`rollout.rollout`. Frame t of a session uses the key fold_in(seed, t), so a session replays
exactly from its action log.

Dimension keys: C context frames, W window (data.seq_len), H/W pixels, h/w code grid.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, ImageDraw

from teco_jax import rollout as rollout_lib
from teco_jax.errors import UserError
from teco_jax.world_model import WorldModel, _decode_chunk

CONTEXT_COLOR, GENERATED_COLOR = (40, 200, 60), (220, 40, 40)  # as in the README's GIF


@dataclasses.dataclass(frozen=True)
class Episode:
    """A real episode to start from: frames uint8 (T, H, W, 3) and actions int32 (T,)."""

    name: str
    frames: np.ndarray
    actions: np.ndarray


@nnx.jit(static_argnames=("window",))
def _start(teco, vq_embeddings, codes_1Chw, actions_1C, *, window: int) -> rollout_lib.RolloutState:
    return rollout_lib.start(teco, vq_embeddings, codes_1Chw, actions_1C, window)


@nnx.jit(static_argnames=("window", "sampler"))
def _step(teco, vqgan, vq_embeddings, state, action_1, key, *, window: int, sampler: rollout_lib.Sampler):
    state, codes_1hw = rollout_lib.next_frame(teco, vq_embeddings, state, action_1, key, sampler, window)
    return state, codes_1hw[0], _decode_chunk(vqgan, codes_1hw)[0]


class Engine:
    """One world model shared by every session; calls into it are serialized (one device)."""

    def __init__(self, wm: WorldModel, action_names: Sequence[str] = (), context: int = 16, seed: int = 0,
                 sampler: rollout_lib.Sampler | None = None):
        if not 1 <= context <= wm.window:
            raise UserError(f"--context {context}: the model takes 1 to {wm.window} context frames")
        self.wm, self.context, self.seed = wm, context, seed
        self.window, self.sampler = wm.window, sampler or wm.sampler
        names = tuple(action_names) or tuple(f"action {i}" for i in range(wm.num_actions))
        if len(names) != wm.num_actions:
            raise UserError(f"{len(names)} action names for a model with {wm.num_actions} actions")
        self.action_names = names + ("no action",)  # the last: TECO's null action
        self._lock = threading.Lock()

    @property
    def null_action(self) -> int:
        return self.wm.num_actions

    def start(self, episode: Episode) -> rollout_lib.RolloutState:
        frames = episode.frames[: self.context]
        if len(frames) < self.context:
            raise UserError(f"episode {episode.name} has {len(frames)} frames, fewer than --context {self.context}")
        with self._lock:
            codes = self.wm.encode(frames[None])
            return _start(self.wm.teco, self.wm.vq_embeddings, jnp.asarray(codes, jnp.int32),
                          jnp.asarray(episode.actions[None, : self.context], jnp.int32), window=self.window)

    def step(self, state: rollout_lib.RolloutState, action: int, index: int):
        """(new state, the frame's VQ-GAN codes (h, w), its uint8 (H, W, 3) pixels) for frame
        number `index` of a session."""
        if not 0 <= action <= self.null_action:
            raise UserError(f"action {action} is not one of 0..{self.null_action} ({', '.join(self.action_names)})")
        key = jax.random.fold_in(jax.random.key(self.seed), index)
        with self._lock:
            state, codes, frame = _step(self.wm.teco, self.wm.vqgan, self.wm.vq_embeddings, state,
                                        jnp.asarray([action], jnp.int32), key, window=self.window,
                                        sampler=self.sampler)
            return state, np.asarray(codes), np.asarray(frame)


class Session:
    """One player: the episode it started from, the frames so far, and the log of actions."""

    def __init__(self, engine: Engine, episode: Episode, session_id: str):
        self.engine, self.id = engine, session_id
        self.last_seen = time.monotonic()
        self.reset(episode)

    def reset(self, episode: Episode) -> None:
        self.episode = episode
        self.state = self.engine.start(episode)
        self.frames: list[np.ndarray] = list(episode.frames[: self.engine.context])
        self.codes: list[np.ndarray] = []  # the generated frames' VQ-GAN codes
        self.log: list[dict] = []  # one entry per generated frame: index, action, name, ms

    @property
    def context(self) -> int:
        return self.engine.context

    def step(self, action: int) -> np.ndarray:
        t0 = time.perf_counter()
        index = len(self.frames)
        self.state, codes, frame = self.engine.step(self.state, action, index)
        self.frames.append(frame)
        self.codes.append(codes)
        self.log.append({"index": index, "action": int(action), "name": self.engine.action_names[action],
                         "ms": round(1000 * (time.perf_counter() - t0), 1)})
        return frame

    def recording(self, scale: int = 4, fmt: str = "gif", fps: int = 8) -> bytes:
        """The session as a GIF or MP4: context framed green, generated frames red, captions below."""
        frames = [annotate(f, i, self, scale) for i, f in enumerate(self.frames)]
        buf = io.BytesIO()
        if fmt == "gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                           loop=0)
        elif fmt == "mp4":
            import imageio.v3 as iio

            even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # yuv420p wants even sizes
            buf.write(iio.imwrite("<bytes>", np.stack(even), extension=".mp4", fps=fps, codec="libx264"))
        else:
            raise UserError(f"unknown recording format {fmt!r} (gif or mp4)")
        return buf.getvalue()


def annotate(frame: np.ndarray, index: int, session: Session, scale: int) -> np.ndarray:
    """A frame upscaled (nearest), framed green (context) or red (generated), captioned."""
    context = index < session.context
    big = np.kron(frame, np.ones((scale, scale, 1), np.uint8))
    pad = max(2, scale)
    framed = np.empty((big.shape[0] + 2 * pad, big.shape[1] + 2 * pad, 3), np.uint8)
    framed[:] = CONTEXT_COLOR if context else GENERATED_COLOR
    framed[pad:-pad, pad:-pad] = big
    image = Image.new("RGB", (framed.shape[1], framed.shape[0] + 14), (0, 0, 0))
    image.paste(Image.fromarray(framed), (0, 0))
    if context:
        caption = f"{index} real"
    else:
        caption = f"{index} {session.log[index - session.context]['name']}"
    ImageDraw.Draw(image).text((2, framed.shape[0] + 1), caption, fill=(255, 255, 255))
    return np.asarray(image)


def png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()
