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
from numba import njit, prange

from data_gen import voxel_world as vw
from data_gen.common import Generator, add_common_flags, run
from data_gen.voxel_world import World
from teco_jax.revisit import memory_mask, revisit_mask, wrap_angle

from data_gen.voxel_policy import (ACTIONS, FORWARD, FORWARD_JUMP, JUMP, NOOP, POLICIES, TURN_LEFT,  # noqa: F401
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


# ----------------------------------------------------------------------------- rendering

_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}  # fast math without assuming away inf/nan
_BIG = 1e30
_TILE_SHIFT = 2
_TILE = 1 << _TILE_SHIFT  # rays skip whole _TILE x _TILE tiles of columns they pass above
_HORIZON = (0.76, 0.83, 0.92)
_ZENITH = (0.42, 0.60, 0.93)
_CLOUD = (0.97, 0.97, 0.99)
_SUN = (1.0, 0.97, 0.80)
_TINT = (0.50, 0.66, 0.56)  # what is seen under water
_TEXF = float(vw.TEX)
_TEXMAX = vw.TEX - 1
_MIPMAX = vw.MIP_LEVELS - 1


@njit(cache=True, fastmath=_FM)
def _sky_gradient(dz):
    h = dz * 2.2
    if h < 0.0:
        h = 0.0
    elif h > 1.0:
        h = 1.0
    h = math.sqrt(h)
    return (_HORIZON[0] + (_ZENITH[0] - _HORIZON[0]) * h,
            _HORIZON[1] + (_ZENITH[1] - _HORIZON[1]) * h,
            _HORIZON[2] + (_ZENITH[2] - _HORIZON[2]) * h)


@njit(cache=True, fastmath=_FM)
def _sky(ox, oy, oz, dx, dy, dz, sky):
    """Sky gradient with a square sun and its glow.

    sky: float64 [sun xyz, sun basis e1 xyz, e2 xyz, cloud height, cloud cell]
    """
    r, g, b = _sky_gradient(dz)
    sd = dx * sky[0] + dy * sky[1] + dz * sky[2]
    if sd > 0.8:
        a1 = abs(dx * sky[3] + dy * sky[4] + dz * sky[5])
        a2 = abs(dx * sky[6] + dy * sky[7] + dz * sky[8])
        if a1 < 0.07 * sd and a2 < 0.07 * sd:
            return _SUN[0], _SUN[1], _SUN[2]
        glow = (sd - 0.8) * 1.2
        glow = glow * glow
        r += (1.0 - r) * glow
        g += (1.0 - g) * glow
        b += (0.9 - b) * glow
    return r, g, b


@njit(cache=True, fastmath=_FM)
def _clouds(ox, oy, oz, dx, dy, dz, sky, clouds, drift, r, g, b):
    """Blend a flat layer of blocky clouds (cells of `clouds`, shifted by drift along x) over r, g, b."""
    if dz > 0.02:
        tc = (sky[9] - oz) / dz
        fade = 1.0 - tc / 160.0
        if fade > 0.0:
            n = clouds.shape[0]
            cx = int(math.floor((ox + tc * dx + drift) / sky[10])) % n
            cy = int(math.floor((oy + tc * dy) / sky[10])) % n
            if clouds[cx, cy]:
                a = 0.85 * fade
                r += (_CLOUD[0] - r) * a
                g += (_CLOUD[1] - g) * a
                b += (_CLOUD[2] - b) * a
    return r, g, b


@njit(cache=True, fastmath=_FM)
def _lod(t, pix, cosn):
    cosn = max(cosn, 0.2)
    fp = t * pix * _TEXF / cosn
    if fp <= 1.0:
        return 0
    lev = int(math.log2(fp) + 0.3)
    return min(_MIPMAX, lev)


@njit(cache=True, fastmath=_FM)
def _texel(tex, blk, slot, lev, u, v):
    iu = int(u * _TEXF)
    iv = int(v * _TEXF)
    iu = 0 if iu < 0 else (min(iu, _TEXMAX))
    iv = 0 if iv < 0 else (min(iv, _TEXMAX))
    return tex[blk, slot, lev, iv, iu, 0], tex[blk, slot, lev, iv, iu, 1], \
        tex[blk, slot, lev, iv, iu, 2], tex[blk, slot, lev, iv, iu, 3]


@njit(cache=True, fastmath=_FM)
def _face(ox, oy, oz, dx, dy, dz, t, face, blk, tex, pix):
    """Color (r, g, b, alpha) of block `blk`'s face `face` (1 x, 2 y, else z) where the ray meets it."""
    hx = ox + t * dx
    hy = oy + t * dy
    hz = oz + t * dz
    if face == 1:
        u = hy - math.floor(hy)
        if dx < 0:
            u = 1.0 - u
        v = 1.0 - (hz - math.floor(hz))
        slot = 1
        light = 0.80
        cosn = abs(dx)
    elif face == 2:
        u = hx - math.floor(hx)
        if dy > 0:
            u = 1.0 - u
        v = 1.0 - (hz - math.floor(hz))
        slot = 1
        light = 0.66
        cosn = abs(dy)
    else:
        u = hx - math.floor(hx)
        v = hy - math.floor(hy)
        cosn = abs(dz)
        if dz <= 0:
            slot = 0
            light = 1.0
        else:
            slot = 2
            light = 0.5
    r, g, b, a = _texel(tex, blk, slot, _lod(t, pix, cosn), u, v)
    return r * light, g * light, b * light, a


@njit(cache=True, fastmath=_FM)
def _sprite(ox, oy, oz, dx, dy, dz, ix, iy, c, tin, tout, blk, tex, pix):
    """Crossed-quad plant in cell (ix, iy, c): (hit t or -1, r, g, b)."""
    lx0 = ox - ix
    ly0 = oy - iy
    lz0 = oz - c
    best = -1.0
    br = 0.0
    bg = 0.0
    bb = 0.0
    for plane in range(2):
        if plane == 0:
            den = dx - dy
            if abs(den) < 1e-9:
                continue
            tp = (ly0 - lx0) / den
        else:
            den = dx + dy
            if abs(den) < 1e-9:
                continue
            tp = (1.0 - lx0 - ly0) / den
        if tp < tin or tp > tout or (best >= 0 and tp >= best):
            continue
        lx = lx0 + tp * dx
        lz = lz0 + tp * dz
        if lx < 0.0 or lx > 1.0 or lz < 0.0 or lz > 1.0:
            continue
        r, g, b, a = _texel(tex, blk, 1, _lod(tp, pix, 1.0), lx, 1.0 - lz)
        if a >= 0.5:
            best = tp
            br = r * 0.9
            bg = g * 0.9
            bb = b * 0.9
    return best, br, bg, bb


# Inlined at numba's level: as a real call it costs ~100 ns per ray (array arguments are passed
# and reference counted on every call), about half the render time.
@njit(cache=True, fastmath=_FM, inline="always")
def _trace(ox, oy, oz, dx, dy, dz, pix, blocks, colmax, tiles, kinds, ztop, tex, sky, clouds, drift, vd, fog0):
    """Color of one ray; returns (r, g, b, what): what 0 sky, 1 a surface, 2 water on the way."""
    nx = blocks.shape[0]
    ny = blocks.shape[1]
    t0 = 0.0
    t1 = vd
    face = 0
    if oz >= ztop:
        if dz >= -1e-12:
            r, g, b = _sky(ox, oy, oz, dx, dy, dz, sky)
            r, g, b = _clouds(ox, oy, oz, dx, dy, dz, sky, clouds, drift, r, g, b)
            return r, g, b, 0
        t0 = (ztop - oz) / dz
        face = 3
    if dz > 1e-12:
        tz = (ztop - oz) / dz
        t1 = min(t1, tz)
    elif dz < -1e-12:
        tz = -oz / dz
        t1 = min(t1, tz)
    hit_t = -1.0
    hr = 0.0
    hg = 0.0
    hb = 0.0
    wt = -1.0
    wr = 0.0
    wg = 0.0
    wb = 0.0
    if t0 < t1:
        px = ox + t0 * dx
        py = oy + t0 * dy
        ix = int(math.floor(px))
        iy = int(math.floor(py))
        if dx > 0:
            sx = 1
            tdx = 1.0 / dx
            tmx = t0 + (ix + 1 - px) * tdx
        elif dx < 0:
            sx = -1
            tdx = -1.0 / dx
            tmx = t0 + (px - ix) * tdx
        else:
            sx = 0
            tdx = _BIG
            tmx = _BIG
        if dy > 0:
            sy = 1
            tdy = 1.0 / dy
            tmy = t0 + (iy + 1 - py) * tdy
        elif dy < 0:
            sy = -1
            tdy = -1.0 / dy
            tmy = t0 + (py - iy) * tdy
        else:
            sy = 0
            tdy = _BIG
            tmy = _BIG
        wx = ix % nx
        wy = iy % ny
        t = t0
        while True:
            tc = min(tmy, tmx)
            za = oz + t * dz
            tile_top = tiles[wx >> _TILE_SHIFT, wy >> _TILE_SHIFT]
            if za >= tile_top:
                # above everything in this tile now: skip to where the ray leaves the tile if it
                # is still above everything there
                bx = (ix >> _TILE_SHIFT) << _TILE_SHIFT
                by = (iy >> _TILE_SHIFT) << _TILE_SHIFT
                ex = (bx + _TILE - ox) / dx if sx > 0 else ((bx - ox) / dx if sx < 0 else _BIG)
                ey = (by + _TILE - oy) / dy if sy > 0 else ((by - oy) / dy if sy < 0 else _BIG)
                te = min(ey, ex)
                if te > tc and oz + te * dz >= tile_top:
                    if te >= t1:
                        break
                    t = te
                    if ex <= ey:
                        ix = bx + _TILE if sx > 0 else bx - 1
                        face = 1
                    else:
                        ix = int(math.floor(ox + te * dx))
                    if ey <= ex:
                        iy = by + _TILE if sy > 0 else by - 1
                        face = 2
                    else:
                        iy = int(math.floor(oy + te * dy))
                    wx = ix % nx
                    wy = iy % ny
                    if sx > 0:
                        tmx = (ix + 1 - ox) * tdx
                    elif sx < 0:
                        tmx = (ox - ix) * tdx
                    if sy > 0:
                        tmy = (iy + 1 - oy) * tdy
                    elif sy < 0:
                        tmy = (oy - iy) * tdy
                    continue
            tend = min(t1, tc)
            top = colmax[wx, wy]
            zb = oz + tend * dz
            if (min(zb, za)) < top:
                c = int(math.floor(za))
                ce = int(math.floor(zb))
                tin = t
                fin = face
                if c >= top:  # coming down from above the column's top
                    c = top - 1
                    tin = (top - oz) / dz
                    fin = 3
                if ce >= top:
                    ce = top - 1
                c = max(c, 0)
                ce = max(ce, 0)
                st = 1 if dz > 0 else -1
                while True:
                    if c == ce:
                        tout = tend
                    else:
                        tout = ((c + 1 if st > 0 else c) - oz) / dz
                    blk = blocks[wx, wy, c]
                    if blk != 0:
                        kind = kinds[blk]
                        if kind == 1:
                            hr, hg, hb, a = _face(ox, oy, oz, dx, dy, dz, tin, fin, blk, tex, pix)
                            hit_t = tin
                        elif kind == 2:
                            r, g, b, a = _face(ox, oy, oz, dx, dy, dz, tin, fin, blk, tex, pix)
                            if a >= 0.5:
                                hr, hg, hb = r, g, b
                                hit_t = tin
                        elif kind == 3:
                            if wt < 0:
                                wt = tin
                                wr, wg, wb, a = _face(ox, oy, oz, dx, dy, dz, tin, 3, blk, tex, pix)
                        elif kind == 4:
                            ts, r, g, b = _sprite(ox, oy, oz, dx, dy, dz, ix, iy, c, tin, tout, blk, tex, pix)
                            if ts >= 0:
                                hr, hg, hb = r, g, b
                                hit_t = ts
                        elif kind == 5 and abs(dz) > 1e-9:
                            tp = (c + 0.03 - oz) / dz
                            if tin <= tp <= tout:
                                lx = ox + tp * dx - ix
                                ly = oy + tp * dy - iy
                                r, g, b, a = _texel(tex, blk, 0, _lod(tp, pix, abs(dz)), lx, ly)
                                if a >= 0.5:
                                    hr, hg, hb = r, g, b
                                    hit_t = tp
                    if hit_t >= 0 or c == ce:
                        break
                    c += st
                    tin = tout
                    fin = 3
                if hit_t >= 0:
                    break
            if tc >= t1:
                break
            t = tc
            if tmx < tmy:
                tmx += tdx
                ix += sx
                wx += sx
                if wx == nx:
                    wx = 0
                elif wx < 0:
                    wx = nx - 1
                face = 1
            else:
                tmy += tdy
                iy += sy
                wy += sy
                if wy == ny:
                    wy = 0
                elif wy < 0:
                    wy = ny - 1
                face = 2

    what = 1
    if wt >= 0:  # a water surface in front: murky, and reflecting the sky at grazing angles
        what = 2
        fr, fg, fb = _sky_gradient(-dz)
        q = 1.0 - abs(dz)
        q = q * q
        fres = 0.10 + 0.45 * q * q
        wr += (fr - wr) * fres
        wg += (fg - wg) * fres
        wb += (fb - wb) * fres
        if hit_t >= 0:
            a = 1.0 - 0.5 * math.exp(-0.7 * (hit_t - wt))
            hr = hr * _TINT[0] + (wr - hr * _TINT[0]) * a
            hg = hg * _TINT[1] + (wg - hg * _TINT[1]) * a
            hb = hb * _TINT[2] + (wb - hb * _TINT[2]) * a
        else:
            hr, hg, hb = wr, wg, wb
        dist = wt
    elif hit_t >= 0:
        dist = hit_t
    else:
        r, g, b = _sky(ox, oy, oz, dx, dy, dz, sky)
        r, g, b = _clouds(ox, oy, oz, dx, dy, dz, sky, clouds, drift, r, g, b)
        return r, g, b, 0
    f = (dist - fog0) / (vd - fog0)
    if f > 0.0:
        f = min(f, 1.0)
        f = f * f * (3.0 - 2.0 * f)
        fr, fg, fb = _sky_gradient(dz)
        hr += (fr - hr) * f
        hg += (fg - hg) * f
        hb += (fb - hb) * f
    return hr, hg, hb, what


@njit(parallel=True, cache=True, fastmath=_FM)
def _render(blocks, colmax, tiles, kinds, tex, sky, clouds, cams, tan_half, vd, fog0, out, counts):
    """Render frames into out (T, H, W, 3) uint8.

    cams: (T, 6) [eye x, y, z, yaw, pitch, cloud drift]; counts: (T, H, 2) int32, per row the
    number of sky pixels and of pixels with water in front.
    """
    num_t, h, w = out.shape[0], out.shape[1], out.shape[2]
    ztop = 0
    for i in range(colmax.shape[0]):
        for j in range(colmax.shape[1]):
            ztop = max(ztop, colmax[i, j])
    pix = 2.0 * tan_half / w
    for row in prange(num_t * h):
        t = row // h
        i = row - t * h
        ox, oy, oz, yaw, pitch = cams[t, 0], cams[t, 1], cams[t, 2], cams[t, 3], cams[t, 4]
        drift = cams[t, 5]
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        fx, fy, fz = cp * cy, cp * sy, sp
        rx, ry = sy, -cy
        ux, uy, uz = -sp * cy, -sp * sy, cp
        bv = (1.0 - 2.0 * (i + 0.5) / h) * tan_half
        n_sky = 0
        n_water = 0
        for j in range(w):
            av = (2.0 * (j + 0.5) / w - 1.0) * tan_half
            dx = fx + av * rx + bv * ux
            dy = fy + av * ry + bv * uy
            dz = fz + bv * uz
            inv = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
            r, g, b, what = _trace(ox, oy, oz, dx * inv, dy * inv, dz * inv, pix, blocks, colmax, tiles, kinds,
                                   ztop, tex, sky, clouds, drift, vd, fog0)
            out[t, i, j, 0] = np.uint8(min(max(r * 255.0 + 0.5, 0.0), 255.0))
            out[t, i, j, 1] = np.uint8(min(max(g * 255.0 + 0.5, 0.0), 255.0))
            out[t, i, j, 2] = np.uint8(min(max(b * 255.0 + 0.5, 0.0), 255.0))
            if what == 0:
                n_sky += 1
            elif what == 2:
                n_water += 1
        counts[t, i, 0] = n_sky
        counts[t, i, 1] = n_water


def tile_max(colmax: np.ndarray) -> np.ndarray:
    """Highest column top in each _TILE x _TILE tile, int32; lets rays skip tiles they pass above."""
    n, m = colmax.shape
    if n % _TILE or m % _TILE:
        raise ValueError(f"world size must be a multiple of {_TILE}, got {colmax.shape}")
    return np.ascontiguousarray(colmax.reshape(n // _TILE, _TILE, m // _TILE, _TILE).max(axis=(1, 3)), np.int32)


def _sky_params(world: World) -> np.ndarray:
    s = np.asarray(world.sun, np.float64)
    e1 = np.cross(s, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e1, s)
    return np.concatenate([s, e1, e2, [world.height + 12.0, float(vw.CLOUD_CELL)]]).astype(np.float64)


def render_frames(world: World, eye: np.ndarray, yaw: np.ndarray, pitch: np.ndarray | float,
                  config: VoxelConfig, frame_index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render cameras at `eye` (T, 3) [x, y, z] with headings `yaw` (T,) and `pitch` (radians).

    Returns (frames uint8 (T, H, W, 3), counts int32 (T, 2): sky pixels, pixels with water in front).
    frame_index (T,) sets how far the clouds have drifted (default 0, 1, ...).
    """
    eye = np.asarray(eye, np.float64).reshape(-1, 3)
    num = len(eye)
    cams = np.zeros((num, 6), np.float64)
    cams[:, :3] = eye
    cams[:, 3] = np.broadcast_to(np.asarray(yaw, np.float64), (num,))
    cams[:, 4] = np.broadcast_to(np.asarray(pitch, np.float64), (num,))
    cams[:, 5] = 0.03 * (np.arange(num) if frame_index is None else np.asarray(frame_index))
    res = config.resolution
    out = np.empty((num, res, res, 3), np.uint8)
    counts = np.empty((num, res, 2), np.int32)
    tan_half = math.tan(math.radians(config.fov_deg) / 2)
    _render(np.ascontiguousarray(world.blocks), np.ascontiguousarray(world.colmax), tile_max(world.colmax),
            vw.RENDER_KIND,
            vw.block_textures(), _sky_params(world), np.ascontiguousarray(world.clouds), cams, tan_half,
            float(config.view_distance), float(config.fog_start * config.view_distance), out, counts)
    return out, counts.sum(axis=1, dtype=np.int32)


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
