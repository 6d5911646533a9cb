"""Blocks, block textures and procedural swamp terrain for the voxel world generator.

The world is a grid `blocks[x, y, z]` (uint8 block ids) of `size x size` columns and
`height` cells, x and y horizontal, z up; cell (x, y, z) spans [x, x+1) x [y, y+1) x [z, z+1).
Horizontally the terrain tiles (it is made from periodic noise and trees wrap around the
edges), so the renderer can treat the world as a torus and never shows an edge, while the
agent is kept inside [0, size) by an invisible wall.

Everything here is plain numpy and depends only on the rng it is handed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Block ids. Kept as plain module ints so that numba folds them into constants.
AIR = 0
GRASS = 1
DIRT = 2
STONE = 3
SAND = 4
WATER = 5
LOG = 6
LEAVES = 7
TALL_GRASS = 8
FLOWER_BLUE = 9
FLOWER_RED = 10
LILY_PAD = 11
CLAY = 12
NUM_BLOCKS = 13

BLOCK_NAMES = ("air", "grass", "dirt", "stone", "sand", "water", "log", "leaves", "tall_grass",
               "flower_blue", "flower_red", "lily_pad", "clay")

# How the renderer and the physics treat each id.
SOLID = np.zeros(NUM_BLOCKS, np.bool_)
SOLID[[GRASS, DIRT, STONE, SAND, LOG, LEAVES, CLAY]] = True
# 0 nothing, 1 opaque cube, 2 alpha-tested cube (leaves), 3 water, 4 crossed sprite, 5 flat pad.
KIND_AIR, KIND_CUBE, KIND_ALPHA_CUBE, KIND_WATER, KIND_SPRITE, KIND_PAD = range(6)
RENDER_KIND = np.zeros(NUM_BLOCKS, np.int8)
RENDER_KIND[[GRASS, DIRT, STONE, SAND, LOG, CLAY]] = KIND_CUBE
RENDER_KIND[LEAVES] = KIND_ALPHA_CUBE
RENDER_KIND[WATER] = KIND_WATER
RENDER_KIND[[TALL_GRASS, FLOWER_BLUE, FLOWER_RED]] = KIND_SPRITE
RENDER_KIND[LILY_PAD] = KIND_PAD

# Texture layout: textures[block, face, level, v, u, rgba] float32 in [0, 1].
FACE_TOP, FACE_SIDE, FACE_BOTTOM = 0, 1, 2
TEX = 16  # texels per block edge
CLOUD_CELL = 4  # blocks per cloud cell
MIP_LEVELS = 5  # 16, 8, 4, 2, 1 texels, each stored upsampled to 16x16


@dataclasses.dataclass(frozen=True)
class World:
    """One episode's world.

    blocks: (size, size, height) uint8 block ids.
    colmax: (size, size) int32, one above the highest non-air cell of each column (0: empty).
    terrain: (size, size) int16, one above the highest terrain block (trees and plants left out);
      below `sea_level` the column is under water.
    clouds: (n, n) bool, the cloud layer's cells (each CLOUD_CELL blocks wide), tiling.
    sun: (3,) float64 unit vector towards the sun.
    """

    blocks: np.ndarray
    colmax: np.ndarray
    terrain: np.ndarray
    sea_level: int
    clouds: np.ndarray
    sun: np.ndarray

    @property
    def size(self) -> int:
        return self.blocks.shape[0]

    @property
    def height(self) -> int:
        return self.blocks.shape[2]


def column_max(blocks: np.ndarray) -> np.ndarray:
    """One above the highest non-air cell of each column, int32 (X, Y)."""
    nonair = blocks != AIR
    top = blocks.shape[2] - np.argmax(nonair[:, :, ::-1], axis=2)
    return np.where(nonair.any(axis=2), top, 0).astype(np.int32)


# ----------------------------------------------------------------------------- textures

def _rgb(hex_color: int) -> np.ndarray:
    return np.array([(hex_color >> 16) & 255, (hex_color >> 8) & 255, hex_color & 255], np.float32) / 255


def _speckle(rng: np.random.Generator, base: int, spread: float, shape=(TEX, TEX)) -> np.ndarray:
    """A base color with per-texel brightness noise, (h, w, 3)."""
    gain = 1.0 + spread * rng.uniform(-1, 1, shape)
    return np.clip(_rgb(base)[None, None] * gain[..., None], 0, 1)


def _opaque(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], axis=-1)


def _dirt(rng):
    t = _speckle(rng, 0x866043, 0.12)
    for _ in range(14):  # small pebbles and dark spots
        v, u = rng.integers(0, TEX, 2)
        t[v, u] = _rgb(0x5E4129 if rng.random() < 0.6 else 0x9B7653)
    return t


def _grass_top(rng):
    t = _speckle(rng, 0x6A7A39, 0.16)
    for _ in range(20):
        v, u = rng.integers(0, TEX, 2)
        t[v, u] = _rgb(0x56652B if rng.random() < 0.5 else 0x7F8F47)
    return t


def _grass_side(rng):
    t = _dirt(rng)
    top = _grass_top(rng)
    fringe = 3 + rng.integers(0, 3, TEX)  # jagged lower edge of the green strip
    for u in range(TEX):
        t[:fringe[u], u] = top[:fringe[u], u]
    return t


def _stone(rng):
    t = _speckle(rng, 0x7D7D7D, 0.08)
    for _ in range(10):  # darker blotches and short cracks
        v, u = rng.integers(0, TEX, 2)
        length = rng.integers(1, 4)
        t[v, u:u + length] = _rgb(0x646464)
    for _ in range(6):
        v, u = rng.integers(0, TEX, 2)
        t[v, u] = _rgb(0x959595)
    return t


def _log_side(rng):
    t = _speckle(rng, 0x5C4A2E, 0.08)
    for u in range(TEX):  # vertical bark furrows
        if rng.random() < 0.35:
            start = rng.integers(0, TEX)
            t[start:start + rng.integers(4, 12), u] *= 0.7
    return np.clip(t, 0, 1)


def _log_top(rng):
    t = _speckle(rng, 0xA8874F, 0.06)
    c = (TEX - 1) / 2
    vv, uu = np.mgrid[0:TEX, 0:TEX]
    ring = np.maximum(np.abs(vv - c), np.abs(uu - c)).round().astype(int)
    t[ring % 2 == 1] *= 0.85
    t[ring >= TEX // 2 - 1] = _log_side(rng)[ring >= TEX // 2 - 1]
    return np.clip(t, 0, 1)


def _leaves(rng):
    t = _speckle(rng, 0x4A6B2A, 0.25)
    alpha = (rng.random((TEX, TEX)) > 0.22).astype(np.float32)
    return np.concatenate([t, alpha[..., None]], axis=-1)


def _water(rng):
    t = _speckle(rng, 0x43604E, 0.05)
    vv, uu = np.mgrid[0:TEX, 0:TEX]
    waves = np.sin((uu + 0.5 * vv) * (2 * np.pi / TEX) * 2) > 0.75
    t[waves] *= 1.15
    return np.clip(t, 0, 1)


def _sprite_grass(rng):
    rgba = np.zeros((TEX, TEX, 4), np.float32)
    for u in range(TEX):
        if rng.random() < 0.7:
            h = rng.integers(5, TEX - 1)
            shade = _rgb(0x5F7430) * rng.uniform(0.8, 1.2)
            rgba[TEX - h:, u, :3] = np.clip(shade, 0, 1)
            rgba[TEX - h:, u, 3] = 1
    return rgba


def _sprite_flower(rng, petal: int):
    rgba = np.zeros((TEX, TEX, 4), np.float32)
    c = TEX // 2
    rgba[7:, c - 1:c + 1, :3] = _rgb(0x3E6B23)  # stem
    rgba[7:, c - 1:c + 1, 3] = 1
    rgba[11, c - 3:c - 1, :3] = _rgb(0x3E6B23)  # a leaf
    rgba[11, c - 3:c - 1, 3] = 1
    vv, uu = np.mgrid[0:TEX, 0:TEX]
    bloom = (np.abs(vv - 5) + np.abs(uu - c + 0.5)) <= 3
    col = _rgb(petal)[None, None] * (1 + 0.15 * rng.uniform(-1, 1, (TEX, TEX)))[..., None]
    rgba[bloom, :3] = np.clip(col[bloom], 0, 1)
    rgba[bloom, 3] = 1
    rgba[5, c - 1:c + 1, :3] = _rgb(0xE8D34B)  # center
    return rgba


def _lily_pad(rng):
    rgba = np.zeros((TEX, TEX, 4), np.float32)
    vv, uu = np.mgrid[0:TEX, 0:TEX]
    r = np.hypot(vv - 7.5, uu - 7.5)
    pad = (r < 7) & ~((uu > 7) & (np.abs(vv - 7.5) < (uu - 7.5) * 0.5))  # a round leaf with a notch
    col = _speckle(rng, 0x2E7A2A, 0.15)
    col[(r > 2) & (r < 3)] *= 0.8
    rgba[pad, :3] = np.clip(col[pad], 0, 1)
    rgba[pad, 3] = 1
    return rgba


def _mips(rgba: np.ndarray) -> np.ndarray:
    """(TEX, TEX, 4) -> (MIP_LEVELS, TEX, TEX, 4): box-filtered levels, upsampled back to TEX."""
    out = np.empty((MIP_LEVELS, TEX, TEX, 4), np.float32)
    for level in range(MIP_LEVELS):
        k = 2 ** level
        # average color weighted by alpha, average alpha
        a = rgba[..., 3:].reshape(TEX // k, k, TEX // k, k, 1)
        c = rgba[..., :3].reshape(TEX // k, k, TEX // k, k, 3)
        asum = a.sum(axis=(1, 3))
        col = (c * a).sum(axis=(1, 3)) / np.maximum(asum, 1e-6)
        small = np.concatenate([col, asum / (k * k)], axis=-1)
        out[level] = small.repeat(k, axis=0).repeat(k, axis=1)
    return out


@functools.lru_cache(maxsize=1)
def block_textures() -> np.ndarray:
    """All block textures, float32 (NUM_BLOCKS, 3 faces, MIP_LEVELS, TEX, TEX, 4); fixed, not per episode."""
    rng = np.random.default_rng(20240607)
    faces = {b: [None, None, None] for b in range(NUM_BLOCKS)}

    def same(b, rgba):
        faces[b] = [rgba, rgba, rgba]

    dirt = _opaque(_dirt(rng))
    faces[GRASS] = [_opaque(_grass_top(rng)), _opaque(_grass_side(rng)), dirt]
    same(DIRT, dirt)
    same(STONE, _opaque(_stone(rng)))
    same(SAND, _opaque(_speckle(rng, 0xD8CB9B, 0.07)))
    same(WATER, _opaque(_water(rng)))
    log_top = _opaque(_log_top(rng))
    faces[LOG] = [log_top, _opaque(_log_side(rng)), log_top]
    same(LEAVES, _leaves(rng))
    same(TALL_GRASS, _sprite_grass(rng))
    same(FLOWER_BLUE, _sprite_flower(rng, 0x2FA8E0))
    same(FLOWER_RED, _sprite_flower(rng, 0xC8241E))
    same(LILY_PAD, _lily_pad(rng))
    same(CLAY, _opaque(_speckle(rng, 0x9EA4B0, 0.06)))
    same(AIR, np.zeros((TEX, TEX, 4), np.float32))
    out = np.zeros((NUM_BLOCKS, 3, MIP_LEVELS, TEX, TEX, 4), np.float32)
    for b in range(NUM_BLOCKS):
        for f in range(3):
            out[b, f] = _mips(faces[b][f].astype(np.float32))
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------- terrain

def periodic_noise(rng: np.random.Generator, n: int, beta: float, cutoff: float) -> np.ndarray:
    """Smooth noise on an n x n torus with amplitude spectrum 1/f^beta, zero mean and unit std.

    cutoff: the shortest wavelength kept, in cells (a soft Gaussian roll-off).
    """
    white = rng.standard_normal((n, n))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    with np.errstate(divide="ignore"):
        filt = np.where(k > 0, k ** (-beta), 0.0)
    filt *= np.exp(-(k * cutoff) ** 2)
    field = np.real(np.fft.ifft2(np.fft.fft2(white) * filt))
    std = field.std()
    return field / std if std > 0 else field


def _place_tree(blocks: np.ndarray, rng: np.random.Generator, x: int, y: int, z0: int) -> None:
    """A swamp oak: a short trunk from z0 up and a wide, flat canopy (wraps at the edges)."""
    n, _, zmax = blocks.shape
    trunk = int(rng.integers(5, 8))
    top = min(z0 + trunk, zmax - 2)
    canopy = [(top - 2, 3), (top - 1, 3), (top, 2), (top + 1, 1)]
    for z, r in canopy:
        if not 0 <= z < zmax:
            continue
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                corner = abs(dx) == r and abs(dy) == r
                if corner and (r >= 2 or rng.random() < 0.5):
                    continue
                cx, cy = (x + dx) % n, (y + dy) % n
                if blocks[cx, cy, z] in (AIR, TALL_GRASS, FLOWER_BLUE, FLOWER_RED, LILY_PAD):
                    blocks[cx, cy, z] = LEAVES
    for z in range(z0, top):
        blocks[x, y, z] = LOG
    # hanging leaves under the rim, like swamp vines, kept above head height
    for dx in range(-3, 4):
        for dy in range(-3, 4):
            if max(abs(dx), abs(dy)) == 3 and rng.random() < 0.25:
                cx, cy = (x + dx) % n, (y + dy) % n
                z = top - 3
                if 0 <= z < zmax and blocks[cx, cy, z] == AIR and not blocks[cx, cy, z - 2:z].any():
                    blocks[cx, cy, z] = LEAVES


def generate_world(rng: np.random.Generator, size: int = 64, height: int = 32, sea_level: int = 12,
                   amplitude: float = 2.0, land_bias: float = 0.35, trees_per_1000: float = 8.0) -> World:
    """A swamp: low grassy land, shallow pools with lily pads, a few tall hills, swamp oaks."""
    if size < 8 or height < sea_level + 12 or sea_level < 4:
        raise ValueError(f"world too small: size={size} height={height} sea_level={sea_level}")
    base = periodic_noise(rng, size, beta=1.6, cutoff=3.0)
    hills = periodic_noise(rng, size, beta=2.0, cutoff=6.0)
    # mostly flat land a block or two above the water, shallow pools, and a few mounds
    surface = sea_level + amplitude * (base + land_bias) + 4.0 * np.maximum(hills - 1.0, 0) ** 1.2
    terrain = np.clip(np.round(surface), 3, height - 12).astype(np.int16)  # first air (or water) cell

    blocks = np.zeros((size, size, height), np.uint8)
    z = np.arange(height)[None, None, :]
    h = terrain[:, :, None].astype(np.int32)
    sandy = periodic_noise(rng, size, beta=1.5, cutoff=2.0) > 1.0
    clay = periodic_noise(rng, size, beta=1.5, cutoff=2.0) > 0.8
    top_block = np.where(terrain >= sea_level, GRASS, np.where(clay, CLAY, DIRT))
    top_block = np.where(sandy & (terrain <= sea_level) & (terrain >= sea_level - 1), SAND, top_block)
    stone_depth = 3 + (rng.random((size, size)) < 0.5)
    blocks[z < h] = STONE
    blocks[(z < h) & (z >= h - stone_depth[:, :, None])] = DIRT
    top_mask = z == h - 1
    blocks[top_mask] = np.broadcast_to(top_block[:, :, None], blocks.shape)[top_mask]
    blocks[(z >= h) & (z < sea_level)] = WATER

    # trees: rejection sampling with a minimum spacing (on the torus)
    want = int(round(trees_per_1000 * size * size / 1000))
    placed: list[tuple[int, int]] = []
    for _ in range(want * 20):
        if len(placed) >= want:
            break
        x, y = (int(v) for v in rng.integers(0, size, 2))
        ground = int(terrain[x, y])
        if ground < sea_level - 1:  # at most one block of water over the roots
            continue
        ok = True
        for px, py in placed:
            ddx = min(abs(px - x), size - abs(px - x))
            ddy = min(abs(py - y), size - abs(py - y))
            if ddx * ddx + ddy * ddy < 25:
                ok = False
                break
        if ok:
            placed.append((x, y))
            _place_tree(blocks, rng, x, y, ground)

    # plants on free ground and lily pads on free water
    land = terrain >= sea_level
    xs, ys = np.nonzero(land)
    zs = terrain[xs, ys].astype(np.int64)
    free = (blocks[xs, ys, zs] == AIR) & (blocks[xs, ys, zs - 1] == GRASS)
    r = rng.random(len(xs))
    plant = np.where(r < 0.012, FLOWER_RED, np.where(r < 0.04, FLOWER_BLUE, TALL_GRASS))
    keep = free & (r < 0.16)
    blocks[xs[keep], ys[keep], zs[keep]] = plant[keep]
    xs, ys = np.nonzero(~land)
    free = blocks[xs, ys, sea_level] == AIR
    keep = free & (rng.random(len(xs)) < 0.07)
    blocks[xs[keep], ys[keep], sea_level] = LILY_PAD

    n_clouds = 128 // CLOUD_CELL
    clouds = periodic_noise(rng, n_clouds, beta=1.0, cutoff=1.0) > 0.5
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = np.deg2rad(rng.uniform(15, 35))
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return World(blocks=blocks, colmax=column_max(blocks), terrain=terrain, sea_level=sea_level,
                 clouds=clouds, sun=sun)
