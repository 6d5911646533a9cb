"""A trained TECO and its VQ-GAN behind one small API: frames in, frames out.

    wm = WorldModel.load("runs/teco")                      # config.json + checkpoint + VQ-GAN
    wm = WorldModel.load("checkpoints/maze_smooth")           # or a parameter-only bundle (teco_jax.bundle)
    codes = wm.encode(frames)                              # uint8 (B, T, H, W, 3) -> int32 (B, T, h, w)
    frames = wm.decode(codes)                              # -> uint8 (B, T, H, W, 3)
    video = wm.rollout(context, actions, 300, key=0)       # uint8 (B, 300, H, W, 3)

The VQ-GAN is the one named by the TECO config (`model.vqgan_dir`) or, failing that, by
the code dataset it was trained on (`teco_meta.json` of `data.dir`); `vqgan_dir=`
overrides both. Rollouts run `teco_jax.rollout.rollout` (KV cache, sliding window of
`data.seq_len` frames), batched.

Dimension keys: B batch, T frames, C context frames, L total frames (context included),
H/W pixels, h/w VQ-GAN code grid, V VQ-GAN vocabulary, E VQ-GAN embedding dim.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from teco_jax import bundle_format, checkpoint
from teco_jax import rollout as rollout_lib
from teco_jax.checkpoint import checkpoint_steps  # noqa: F401 - part of this module's API (benchmark)
from teco_jax.compat import check_compatible, find_vqgan_dir
from teco_jax.loading import load_model, load_vqgan
from teco_jax.parallel import inference_mesh, replicate, shard_batch  # noqa: F401 - also this module's API

# ----------------------------------------------------------------- locating the parts

def _check_workdir(workdir: Path, step: int | None, what: str) -> ml_collections.ConfigDict:
    """The workdir's config, after making sure it holds a checkpoint (of `step`, if given)."""
    if not workdir.is_dir():
        raise FileNotFoundError(f"{what} directory {workdir} does not exist")
    config = checkpoint.load_config(workdir)  # FileNotFoundError without config.json
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {what} directory {workdir} "
                                f"(expected {workdir}/checkpoints/<step>/)")
    if step is not None and step not in steps:
        raise FileNotFoundError(f"{what} directory {workdir} has no checkpoint of step {step}; "
                                f"it has steps {steps}")
    return config


# ----------------------------------------------------------------- compiled pieces

@nnx.jit
def _encode_chunk(vqgan, frames_NHW3: jax.Array) -> jax.Array:
    return vqgan.encode(frames_NHW3.astype(jnp.float32) / 127.5 - 1.0)["codes"].astype(jnp.int32)


@nnx.jit
def _decode_chunk(vqgan, codes_Nhw: jax.Array) -> jax.Array:
    x = vqgan.decode_codes(codes_Nhw).astype(jnp.float32)
    return jnp.round(jnp.clip((x + 1.0) * 127.5, 0.0, 255.0)).astype(jnp.uint8)


def _chunked(fn, model, x: np.ndarray, chunk: int, mesh: Mesh | None = None) -> np.ndarray:
    """fn(model, x[i:i+chunk]) over the leading axis, the last chunk padded (one compiled shape);
    each chunk split over the mesh's devices (its size rounded up to a multiple of them)."""
    n, devices = len(x), (mesh.devices.size if mesh is not None else 1)
    size = -(-min(chunk, n) // devices) * devices
    pad = (-n) % size
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    out = [np.asarray(fn(model, shard_batch(x[i:i + size], mesh))) for i in range(0, len(x), size)]
    return np.concatenate(out)[:n]


# ----------------------------------------------------------------- the API

class VideoModelFacts:
    """What every world model (TECO, the diffusion baseline) answers from its two configs:
    `config` (the model's run) and `vq_config` (its VQ-GAN's run)."""

    config: ml_collections.ConfigDict
    vq_config: ml_collections.ConfigDict

    @property
    def window(self) -> int:
        """Frames the model sees at once (its trained length, data.seq_len)."""
        return int(self.config.data.seq_len)

    @property
    def num_actions(self) -> int:
        return int(self.config.model.num_actions)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        r = int(self.vq_config.model.resolution)
        return r, r, 3

    def _check_frames(self, frames: np.ndarray, name: str) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 frames in [0, 255], got dtype {frames.dtype}")
        if frames.ndim != 5 or frames.shape[2:] != self.frame_shape:
            raise ValueError(f"{name} must have shape (B, T) + {self.frame_shape} for this VQ-GAN, "
                             f"got {frames.shape}")
        return frames


@dataclasses.dataclass
class WorldModel(VideoModelFacts):
    """TECO + VQ-GAN. Build it with `WorldModel.load(checkpoint_dir)`."""

    teco: nnx.Module
    vqgan: nnx.Module
    config: ml_collections.ConfigDict  # TECO's config
    vq_config: ml_collections.ConfigDict
    vq_embeddings: jax.Array  # (V, E): the VQ-GAN's embedding of every code
    chunk: int = 64  # frames per VQ-GAN encode/decode call
    step: int | None = None  # the TECO training step the parameters come from
    mesh: Mesh | None = None  # inference splits batches over its "data" axis (None: one device)

    @classmethod
    def load(cls, checkpoint_dir: Path | str, step: int | None = None,
             vqgan_dir: Path | str | None = None, mesh: Mesh | None = None) -> WorldModel:
        """TECO from its training workdir (config.json + checkpoint `step`, default the latest)
        and the VQ-GAN it was trained with (or `vqgan_dir`), checked against each other; or
        both from a parameter-only bundle directory (`teco_jax.bundle`), which needs no other file.
        `mesh`: parameters are replicated on it and batches split over its devices (default
        `inference_mesh()`: every local device)."""
        mesh = mesh if mesh is not None else inference_mesh()
        teco_dir = Path(checkpoint_dir)
        if bundle_format.is_bundle(teco_dir):
            if step is not None or vqgan_dir is not None:
                raise ValueError(f"{teco_dir} is a bundle: it holds one step and its own VQ-GAN "
                                 "(step= and vqgan_dir= do not apply)")
            b = bundle_format.load(teco_dir)
            return cls._assemble(b.teco, b.vqgan, b.config, b.vq_config, b.step, mesh)
        config = _check_workdir(teco_dir, step, "checkpoint")
        if config.get("task") != "teco":
            raise ValueError(f"{teco_dir} holds a {config.get('task')!r} run, not a TECO")
        vq_dir = Path(vqgan_dir) if vqgan_dir is not None else find_vqgan_dir(config)
        if bundle_format.is_bundle(vq_dir):  # trained on the codes of a bundle's VQ-GAN
            vqgan, vq_config = load_vqgan(vq_dir)
            check_compatible(config, vq_config, teco_dir, vq_dir)
        else:
            vq_config = _check_workdir(vq_dir, None, "VQ-GAN")
            check_compatible(config, vq_config, teco_dir, vq_dir)
            vqgan, _ = load_vqgan(vq_dir, mesh=mesh, config=vq_config)
        teco, config = load_model(teco_dir, step, mesh=mesh, config=config)
        step = checkpoint_steps(teco_dir)[-1] if step is None else step
        return cls._assemble(teco, vqgan, config, vq_config, step, mesh)

    @classmethod
    def _assemble(cls, teco, vqgan, config, vq_config, step, mesh: Mesh) -> WorldModel:
        replicate(teco, mesh)
        replicate(vqgan, mesh)
        table = vqgan.codebook.lookup(jnp.arange(int(vq_config.model.codebook_size), dtype=jnp.int32))
        table = jax.device_put(jnp.asarray(table, jnp.float32), NamedSharding(mesh, P()))
        return cls(teco=teco, vqgan=vqgan, config=config, vq_config=vq_config, vq_embeddings=table, step=step,
                   mesh=mesh)

    # ------------------------------------------------------------- facts
    @property
    def sampler(self) -> rollout_lib.Sampler:
        """The sampler of the TECO config (model.sampling)."""
        return rollout_lib.Sampler.from_config(self.config.model.sampling)

    # ------------------------------------------------------------- codes <-> frames
    def encode(self, frames_BTHW3: np.ndarray) -> np.ndarray:
        """uint8 frames (B, T, H, W, 3) -> VQ-GAN codes int32 (B, T, h, w)."""
        frames = self._check_frames(frames_BTHW3, "frames")
        b, t = frames.shape[:2]
        if b * t == 0:
            return np.zeros((b, t) + tuple(int(x) for x in self.config.model.vq_grid), np.int32)
        codes = _chunked(_encode_chunk, self.vqgan, frames.reshape((b * t,) + frames.shape[2:]), self.chunk,
                         self.mesh)
        return codes.reshape((b, t) + codes.shape[1:])

    def _check_codes(self, codes_BThw: np.ndarray, name: str) -> np.ndarray:
        codes = np.asarray(codes_BThw)
        grid = tuple(int(x) for x in self.config.model.vq_grid)
        if codes.ndim != 4 or codes.shape[2:] != grid:
            raise ValueError(f"{name} must have shape (B, T) + {grid}, got {codes.shape}")
        vocab = int(self.vq_config.model.codebook_size)
        if codes.size and (codes.min() < 0 or codes.max() >= vocab):
            raise ValueError(f"{name} must lie in [0, {vocab}), got values in [{codes.min()}, {codes.max()}]")
        return codes

    def decode(self, codes_BThw: np.ndarray) -> np.ndarray:
        """VQ-GAN codes int (B, T, h, w) -> uint8 frames (B, T, H, W, 3)."""
        codes = self._check_codes(codes_BThw, "codes")
        grid = codes.shape[2:]
        b, t = codes.shape[:2]
        if b * t == 0:
            return np.zeros((b, t) + self.frame_shape, np.uint8)
        frames = _chunked(_decode_chunk, self.vqgan, codes.reshape((b * t,) + grid).astype(np.int32), self.chunk,
                          self.mesh)
        return frames.reshape((b, t) + frames.shape[1:])

    # ------------------------------------------------------------- rollouts
    def _actions(self, actions_BL, batch: int, num_frames: int) -> np.ndarray:
        """Checked actions (B, L) int32; None = the null action everywhere (unconditional)."""
        null = self.num_actions  # TECO's extra "no action given" index
        if actions_BL is None:
            return np.full((batch, num_frames), null, np.int32)
        if not self.config.model.use_actions:
            raise ValueError("this TECO was trained without actions (model.use_actions=False): pass actions=None")
        actions = np.asarray(actions_BL)
        if actions.shape != (batch, num_frames):
            raise ValueError(f"actions must have shape (B, L) = ({batch}, {num_frames}), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            bad = actions[(actions < 0) | (actions >= self.num_actions)]
            raise ValueError(f"actions must lie in [0, {self.num_actions}) (num_actions={self.num_actions}); "
                             f"got {sorted(set(bad.tolist()))[:8]} (use actions=None for unconditional rollouts)")
        return actions.astype(np.int32)

    def rollout_codes(self, context_codes_BChw: np.ndarray, actions_BL: np.ndarray | None, num_frames: int,
                      key: jax.Array | int = 0, sampler: rollout_lib.Sampler | None = None) -> np.ndarray:
        """Codes (B, L, h, w) int32 of the C context codes followed by L - C generated frames."""
        codes = self._check_codes(context_codes_BChw, "context codes")
        b, c = codes.shape[:2]
        if c < 1:
            raise ValueError("a rollout needs at least one context frame")
        if c > self.window:
            raise ValueError(f"{c} context frames are more than the model's window of data.seq_len="
                             f"{self.window} frames; give at most {self.window}")
        if num_frames < c:
            raise ValueError(f"num_frames={num_frames} is fewer than the {c} context frames (it counts them)")
        actions = self._actions(actions_BL, b, num_frames)
        if actions_BL is None and self.config.model.use_actions and not self.config.model.get("action_dropout", 0):
            warnings.warn("this TECO never saw the null action in training (model.action_dropout=0): "
                          "unconditional rollouts are out of distribution", stacklevel=3)
        key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
        out = self.rollout_codes_on_devices(codes, actions, num_frames, key, sampler)
        return np.asarray(out)

    def rollout_codes_on_devices(self, codes_BChw, actions_BL, num_frames: int, key: jax.Array,
                                 sampler: rollout_lib.Sampler | None = None) -> jax.Array:
        """`rollout.rollout` with the batch split over the mesh (unchecked inputs; the result
        stays on the devices, split the same way)."""
        return rollout_lib.rollout(self.teco, self.vq_embeddings, self.put_batch(codes_BChw),
                                   self.put_batch(actions_BL), key, num_frames=int(num_frames), window=self.window,
                                   sampler=sampler or self.sampler)

    def put_batch(self, x) -> jax.Array:
        """int32 x on the devices, its batch axis split over the mesh (see shard_batch)."""
        return shard_batch(np.asarray(x, np.int32), self.mesh)

    def rollout(self, context_BCHW3: np.ndarray, actions_BL: np.ndarray | None, num_frames: int,
                key: jax.Array | int = 0, sampler: rollout_lib.Sampler | None = None) -> np.ndarray:
        """A video of num_frames (L) frames: the C context frames, unchanged, then L - C generated.

        context: uint8 (B, C, H, W, 3), C <= data.seq_len. actions: int (B, L) in
        [0, num_actions), actions[:, t] leading from frame t-1 to frame t, or None for an
        unconditional rollout (the null action). key: a PRNG key or an int seed.
        sampler: default the config's (model.sampling). Returns uint8 (B, L, H, W, 3).
        """
        context = self._check_frames(context_BCHW3, "context frames")
        codes = self.rollout_codes(self.encode(context), actions_BL, num_frames, key, sampler)
        c = context.shape[1]
        return np.concatenate([context, self.decode(codes[:, c:])], axis=1)
