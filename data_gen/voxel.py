"""Minecraft-style voxel world videos: walks through a procedural swamp that come back.

Like TECO's Minecraft dataset: an agent walks and turns through a blocky swamp biome (grass,
dirt, stone, sand, shallow water with lily pads, swamp oaks, tall grass and flowers) while a
first-person camera records it; by default it explores, then walks its earlier paths again
(data_gen/voxel_policy.py), so places come back into view. Each episode gets its own world
and walk, made from its seed alone.

Conventions
  * World coordinates x, y horizontal, z up, in blocks (see voxel_world.py). The agent's
    pose is [x, y, yaw]: its horizontal position and heading, yaw = 0 looking along +x,
    increasing counter-clockwise seen from above (turn_left increases it), wrapped to [-pi, pi).
    `elevation` is the height of its feet; the camera sits `eye_height` above them.
  * actions[t] is the action that took the agent from its state at frame t-1 to frame t; one
    step is simulated before frame 0, so actions[0] already acts.
  * The renderer casts one ray per pixel through the voxel grid (a column-by-column DDA with
    per-column height skipping), textures the face it hits, shades it by its normal, blends
    in distance fog and draws sky, sun and clouds where nothing is hit within the view
    distance. The terrain tiles, so rays wrap around the world and its edge is never seen;
    the agent itself is kept inside it by an invisible wall.

CLI:  python -m data_gen.voxel --episodes 100 --out data/voxel --preset 64 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from data_gen import voxel_world as vw
from data_gen.common import Generator, add_common_flags, run
from data_gen.voxel_render import render_frames  # noqa: F401  (also part of this module's API)
from data_gen.voxel_world import World
from teco_jax.revisit import memory_mask, revisit_mask, wrap_angle

from data_gen.voxel_policy import (ACTIONS, FORWARD, FORWARD_JUMP, JUMP, NOOP, POLICIES, TURN_LEFT,  # noqa: F401 (NOOP: API)
                                   TURN_RIGHT, RandomWalkPolicy, ReturnPolicy)


@dataclasses.dataclass(frozen=True)
class VoxelConfig:
    resolution: int = 128            # frames are resolution x resolution
    episode_length: int = 300        # frames per episode
    world_size: int = 64             # columns along x and along y
    world_height: int = 32           # cells along z
    sea_level: int = 12              # water fills empty cells below this height
    terrain_amplitude: float = 2.0   # std of the terrain height around the sea level, blocks
    trees_per_1000: float = 8.0      # trees per 1000 columns
    fov_deg: float = 70.0            # vertical (= horizontal) field of view
    pitch_deg: float = -8.0          # camera pitch, negative looks down
    view_distance: float = 32.0      # rays stop here; fog reaches the sky color here
    fog_start: float = 0.45          # fog begins at this fraction of the view distance
    eye_height: float = 1.62         # camera above the feet
    walk_speed: float = 0.25         # blocks per frame when walking
    turn_deg: float = 15.0           # degrees per turn action
    jump_height: float = 1.25        # apex of a jump, blocks
    gravity: float = 0.08            # blocks / frame^2
    step_height: float = 1.0         # ledges up to this high are climbed without jumping
    max_water_depth: int = 1         # columns with deeper water cannot be entered
    margin: float = 0.5              # the invisible wall's distance from the world edge
    body_radius: float = 0.3         # half-width of the agent's square footprint
    policy: str = "return"           # "return" (explore, then walk earlier paths again) or "random"
    explore_frames: int = 100        # return policy: frames of exploring before the first trip back

    def validate(self) -> None:
        if not 8 <= self.resolution <= 1024:
            raise ValueError(f"resolution must be in [8, 1024], got {self.resolution}")
        if self.episode_length < 1:
            raise ValueError(f"episode_length must be at least 1, got {self.episode_length}")
        if self.world_size < 16 or self.world_size % 4:
            raise ValueError(f"world_size must be a multiple of 4 and at least 16, got {self.world_size}")
        if not 4 <= self.sea_level <= self.world_height - 12:
            raise ValueError(f"sea_level must be in [4, world_height - 12], got {self.sea_level} "
                             f"with world_height {self.world_height}")
        if not 10 <= self.fov_deg <= 150:
            raise ValueError(f"fov_deg must be in [10, 150], got {self.fov_deg}")
        if not -89 <= self.pitch_deg <= 89:
            raise ValueError(f"pitch_deg must be in [-89, 89], got {self.pitch_deg}")
        if not 2 <= self.view_distance <= 256:
            raise ValueError(f"view_distance must be in [2, 256], got {self.view_distance}")
        if not 0 <= self.fog_start < 1:
            raise ValueError(f"fog_start must be in [0, 1), got {self.fog_start}")
        if not 0 < self.walk_speed < 1:
            raise ValueError(f"walk_speed must be in (0, 1), got {self.walk_speed}")
        if not 0 < self.turn_deg <= 180:
            raise ValueError(f"turn_deg must be in (0, 180], got {self.turn_deg}")
        if self.gravity <= 0 or self.jump_height < 0:
            raise ValueError("gravity must be positive and jump_height non-negative")
        if not 0 < self.eye_height < _BODY:
            raise ValueError(f"eye_height must be in (0, {_BODY}), got {self.eye_height}")
        if self.step_height < 0 or self.max_water_depth < 0:
            raise ValueError("step_height and max_water_depth must be non-negative")
        if self.terrain_amplitude < 0 or self.trees_per_1000 < 0:
            raise ValueError("terrain_amplitude and trees_per_1000 must be non-negative")
        if not 0 <= self.body_radius < 0.5:
            raise ValueError(f"body_radius must be in [0, 0.5), got {self.body_radius}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.explore_frames < 2:
            raise ValueError(f"explore_frames must be at least 2, got {self.explore_frames}")
        if not 0 <= self.margin < self.world_size / 4:
            raise ValueError(f"margin must be in [0, world_size / 4), got {self.margin}")


PRESETS = {
    "128": VoxelConfig(),
    "64": VoxelConfig(resolution=64),
    # CPU-sized, like the maze's cpu preset: 32x32 frames, 128-frame episodes (the benchmark's
    # cpu protocol: 64 context frames, 64 predicted), the first trip back after 40 frames.
    "cpu": VoxelConfig(resolution=32, episode_length=128, explore_frames=40),
}


# ----------------------------------------------------------------------------- world + physics

def make_world(rng: np.random.Generator, config: VoxelConfig) -> World:
    return vw.generate_world(rng, size=config.world_size, height=config.world_height,
                             sea_level=config.sea_level, amplitude=config.terrain_amplitude,
                             trees_per_1000=config.trees_per_1000)


_BODY = 1.8  # agent height, blocks


def _ground_below(world: World, cx: int, cy: int, z: float) -> int:
    """Top of the highest solid cell in column (cx, cy) whose top is at most z (0 if none)."""
    col = world.blocks[cx, cy]
    for c in range(min(int(math.floor(z + 1e-6)), world.height) - 1, -1, -1):
        if vw.SOLID[col[c]]:
            return c + 1
    return 0


def _clear(world: World, cx: int, cy: int, z: float) -> bool:
    """No solid cell of column (cx, cy) overlaps the body standing at feet height z."""
    col = world.blocks[cx, cy]
    lo = max(int(math.floor(z + 1e-6)), 0)
    hi = min(int(math.ceil(z + _BODY - 1e-6)), world.height)
    return not any(vw.SOLID[col[c]] for c in range(lo, hi))


def footprint(x: float, y: float, radius: float, size: int) -> list[tuple[int, int]]:
    """The columns that the agent's square footprint (half-width radius) at (x, y) overlaps."""
    xs = sorted({min(max(int(math.floor(x - radius)), 0), size - 1), min(int(math.floor(x + radius)), size - 1)})
    ys = sorted({min(max(int(math.floor(y - radius)), 0), size - 1), min(int(math.floor(y + radius)), size - 1)})
    return [(cx, cy) for cx in xs for cy in ys]


def support(world: World, x: float, y: float, z: float, radius: float) -> int:
    """Height the agent at feet height z would stand on: the highest ground under its footprint."""
    return max(_ground_below(world, cx, cy, z) for cx, cy in footprint(x, y, radius, world.size))


def body_clear(world: World, x: float, y: float, z: float, radius: float) -> bool:
    """The agent's body (footprint x [z, z + 1.8)) overlaps no solid cell."""
    return all(_clear(world, cx, cy, z) for cx, cy in footprint(x, y, radius, world.size))


@dataclasses.dataclass
class AgentState:
    x: float
    y: float
    z: float       # feet
    yaw: float
    vz: float = 0.0
    on_ground: bool = True


def jump_speed(config: VoxelConfig) -> float:
    """Take-off speed whose apex is jump_height under the per-frame update z += vz; vz -= g."""
    g = config.gravity
    return -g / 2 + math.sqrt(g * g / 4 + 2 * g * config.jump_height)


def step_agent(world: World, s: AgentState, action: int, config: VoxelConfig) -> tuple[AgentState, bool]:
    """Apply one action; returns the new state and whether a forward move was blocked.

    The agent is a box of half-width config.body_radius and height 1.8. A forward step either
    moves it by walk_speed along its heading or, when blocked (a wall higher than step_height
    above its feet, no head room, deep water, the world's edge), not at all. Ledges up to
    step_height are climbed at once; jumping raises the feet so that higher ones can be reached.
    """
    x, y, z, yaw, vz, on_ground = s.x, s.y, s.z, s.yaw, s.vz, s.on_ground
    rad = config.body_radius
    turn = math.radians(config.turn_deg)
    if action == TURN_LEFT:
        yaw = float(wrap_angle(yaw + turn))
    elif action == TURN_RIGHT:
        yaw = float(wrap_angle(yaw - turn))
    if action in (JUMP, FORWARD_JUMP) and on_ground:
        vz = jump_speed(config)
        on_ground = False
    blocked = False
    if action in (FORWARD, FORWARD_JUMP):
        nx = x + config.walk_speed * math.cos(yaw)
        ny = y + config.walk_speed * math.sin(yaw)
        lo, hi = config.margin + rad, world.size - config.margin - rad
        if not (lo <= nx <= hi and lo <= ny <= hi):
            blocked = True
        else:
            ground = support(world, nx, ny, z + config.step_height, rad)
            nz = max(z, float(ground))
            deep = any(world.blocks[cx, cy, max(world.sea_level - 1 - config.max_water_depth, 0)] == vw.WATER
                       for cx, cy in footprint(nx, ny, rad, world.size))
            if deep or not body_clear(world, nx, ny, nz, rad):
                blocked = True
            else:
                if nz > z:  # step up onto the ledge
                    z, vz, on_ground = nz, 0.0, True
                x, y = nx, ny
    # vertical motion: gravity, landing, ceilings
    ground = support(world, x, y, z, rad)
    if on_ground and z > ground:
        on_ground = False  # walked off a ledge
        vz = 0.0
    if not on_ground:
        nz = z + vz
        vz -= config.gravity
        if nz <= ground:
            nz, vz, on_ground = float(ground), 0.0, True
        elif not body_clear(world, x, y, nz, rad):
            nz, vz = z, 0.0  # bumped the head
        z = nz
    return AgentState(x, y, z, yaw, vz, on_ground), blocked


def spawn(world: World, rng: np.random.Generator, config: VoxelConfig) -> AgentState:
    """A random dry spot with head room, away from the world edge."""
    n = world.size
    lo = int(math.ceil(config.margin)) + 1
    for _ in range(10000):
        cx, cy = (int(v) for v in rng.integers(lo, n - lo, 2))
        z = int(world.terrain[cx, cy])
        x, y = cx + 0.5, cy + 0.5
        if z < world.sea_level or not body_clear(world, x, y, z, config.body_radius) \
                or support(world, x, y, z, config.body_radius) != z:
            continue
        return AgentState(x, y, float(z), float(rng.uniform(-math.pi, math.pi)))
    raise RuntimeError("no dry spot to spawn on")


def simulate(world: World, rng: np.random.Generator, config: VoxelConfig,
             actions: np.ndarray | None = None) -> tuple[np.ndarray, list[AgentState]]:
    """Spawn and walk for episode_length frames (or len(actions) given ones).

    Returns (actions int32 (T,), states: the agent's state at each frame).
    """
    state = spawn(world, rng, config)
    policy = (ReturnPolicy(rng, config.turn_deg, explore=config.explore_frames) if config.policy == "return"
              else RandomWalkPolicy(rng, config.turn_deg))
    num = config.episode_length if actions is None else len(actions)
    out_actions = np.zeros(num, np.int32)
    states: list[AgentState] = []
    blocked = False
    for t in range(num):
        a = policy.act((state.x, state.y, state.yaw), blocked) if actions is None else int(actions[t])
        state, blocked = step_agent(world, state, a, config)
        out_actions[t] = a
        states.append(state)
    return out_actions, states


# ----------------------------------------------------------------------------- episodes

def generate_episode(seed: int, config: VoxelConfig) -> dict[str, np.ndarray]:
    """One episode from its seed: world, walk, frames. Arrays without the batch axis."""
    world_seq, walk_seq = np.random.SeedSequence(int(seed)).spawn(2)
    world = make_world(np.random.default_rng(world_seq), config)
    actions, states = simulate(world, np.random.default_rng(walk_seq), config)
    pose = np.array([[s.x, s.y, s.yaw] for s in states], np.float64)
    elevation = np.array([s.z for s in states], np.float64)
    eye = np.stack([pose[:, 0], pose[:, 1], elevation + config.eye_height], axis=1)
    frames, counts = render_frames(world, eye, pose[:, 2], math.radians(config.pitch_deg), config)
    pixels = config.resolution * config.resolution
    return {
        "video": frames,
        "actions": actions,
        "pose": pose.astype(np.float32),
        "elevation": elevation.astype(np.float32),
        "heightmap": world.terrain.astype(np.int16),
        "sky_fraction": (counts[:, 0] / pixels).astype(np.float32),
        "water_fraction": (counts[:, 1] / pixels).astype(np.float32),
    }


def generate(seeds: np.ndarray, config: VoxelConfig) -> dict[str, np.ndarray]:
    """Render one episode per seed.

    Returns video uint8 (B,T,H,W,3), actions int32 (B,T), pose float32 (B,T,3) [x, y, yaw],
    elevation float32 (B,T) (feet height), heightmap int16 (B,X,Y) (terrain surface height,
    trees and plants left out; below config.sea_level it is under water), sky_fraction and
    water_fraction float32 (B,T) (fraction of each frame's pixels showing sky / water).
    """
    config.validate()
    episodes = [generate_episode(int(s), config) for s in np.asarray(seeds).reshape(-1)]
    return {k: np.stack([e[k] for e in episodes]) for k in episodes[0]}


REVISIT_SPLIT = 144  # summarize(): frames [0, 144) are the memory, [144, T) are scored
MEMORY_WINDOW = 16   # summarize(): the short window of the benchmark's memory frames


def summarize(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-episode statistics. revisit_fraction: the share of frames after the split (144, or the
    middle of shorter episodes) that stand in a column seen before it with a heading within 45
    degrees (`teco_jax.revisit.revisit_mask`); memory_fraction: those whose place only frames
    before the split's last 16 showed (`teco_jax.revisit.memory_mask`)."""
    pose = batch["pose"]
    t = pose.shape[1]
    split = REVISIT_SPLIT if t > REVISIT_SPLIT else t // 2
    steps = np.linalg.norm(np.diff(pose[:, :, :2], axis=1), axis=-1)
    return {
        "revisit_fraction": revisit_mask(pose, split).mean(axis=-1),
        "memory_fraction": memory_mask(pose, split, MEMORY_WINDOW).mean(axis=-1),
        "frames_with_sky": (batch["sky_fraction"] > 0).mean(axis=1),
        "frames_with_water": (batch["water_fraction"] > 0).mean(axis=1),
        "sky_pixels": batch["sky_fraction"].mean(axis=1),
        "distance_walked": steps.sum(axis=1),
        "columns_visited": np.array([len(np.unique(np.floor(p[:, :2]).astype(np.int64), axis=0))
                                     for p in pose], np.float64),
    }


GENERATOR = Generator(name="voxel", generate=generate, action_names=ACTIONS, summarize=summarize)


# ----------------------------------------------------------------------------- CLI

def _config_from_args(args: argparse.Namespace) -> VoxelConfig:
    cfg = PRESETS[args.preset]
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(VoxelConfig)
                 if getattr(args, f.name, None) is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    try:
        cfg.validate()
    except ValueError as e:
        raise SystemExit(f"invalid settings: {e}") from None
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_gen.voxel",
        description="Minecraft-style voxel swamp: first-person walks that come back, rendered by voxel ray "
                    "casting. Writes OUT/{train,test}/ep_*.npz with video, actions, pose [x, y, yaw], "
                    "elevation, heightmap, sky_fraction, water_fraction.",
        epilog=f"actions: {', '.join(f'{i}={a}' for i, a in enumerate(ACTIONS))}. "
               "Settings not given come from --preset.")
    add_common_flags(parser)
    g = parser.add_argument_group("voxel world")
    g.add_argument("--preset", choices=sorted(PRESETS), default="128",
                   help="base settings: 128 (128x128 frames, 300-frame episodes), 64 (64x64) or cpu "
                        "(32x32, 128-frame episodes, for CPU recipes)")
    defaults = VoxelConfig()
    helps = {
        "resolution": "frame height and width in pixels",
        "episode_length": "frames per episode",
        "world_size": "columns along x and along y",
        "world_height": "cells along z",
        "sea_level": "water fills empty cells below this height",
        "terrain_amplitude": "spread of terrain heights around the sea level, blocks",
        "trees_per_1000": "trees per 1000 columns",
        "fov_deg": "field of view, degrees",
        "pitch_deg": "camera pitch, degrees (negative looks down)",
        "view_distance": "how far rays go, blocks (fog reaches the sky color there)",
        "fog_start": "fog begins at this fraction of the view distance",
        "eye_height": "camera height above the feet, blocks",
        "walk_speed": "blocks per forward step",
        "turn_deg": "degrees per turn action",
        "jump_height": "apex of a jump, blocks",
        "gravity": "blocks per frame squared",
        "step_height": "ledges up to this high are climbed without a jump",
        "max_water_depth": "deeper water cannot be entered",
        "margin": "distance of the invisible wall from the world edge, blocks",
        "body_radius": "half-width of the agent's square footprint, blocks",
        "policy": f"how the agent walks: {' or '.join(POLICIES)} (data_gen/voxel_policy.py)",
        "explore_frames": "return policy: frames of exploring before the first trip back",
    }
    for f in dataclasses.fields(VoxelConfig):
        g.add_argument(f"--{f.name}", type=type(getattr(defaults, f.name)), default=None,
                       help=f"{helps.get(f.name, f.name)} (128 preset: {getattr(defaults, f.name)})")
    return parser


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = build_parser().parse_args(argv)
    return run(GENERATOR, _config_from_args(args), args)


if __name__ == "__main__":
    main()
