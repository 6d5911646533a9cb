"""A procedural bank of tileable RGB textures for the maze renderer.

`texture_bank(size)` returns dozens of visually distinct textures (bricks, tiles,
checkers, stripes, planks, marble, dots, cobblestones) in varied palettes. The
bank is fully determined by a fixed internal seed, so every process and every
run sees the same textures, and it is cached after the first call.
Every texture tiles seamlessly (its right edge continues into its left edge, and
its bottom edge into its top), so it can cover floors and walls without seams.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

FAMILIES = ("bricks", "tiles", "checkers", "stripes", "planks", "marble", "dots", "cobble")
_SEED = 20230417


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as an RGB float array of shape (3,)."""
    h = (h % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre coordinates in [0, 1): (rows y, columns x), each (size, size)."""
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Periodic value noise in [0, 1]: a random cells x cells lattice, bilinearly upsampled."""
    lattice = rng.random((cells, cells))
    pos = np.arange(size) * cells / size
    i0 = pos.astype(int)
    f = pos - i0
    f = f * f * (3 - 2 * f)  # smoothstep for softer blobs
    i1 = (i0 + 1) % cells
    rows = lattice[i0] * (1 - f)[:, None] + lattice[i1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def _fractal(rng: np.random.Generator, size: int, base: int = 2, octaves: int = 3) -> np.ndarray:
    """A few octaves of periodic value noise, normalised to [0, 1]."""
    total = sum(_noise(rng, size, min(size, base << o)) * 0.5 ** o for o in range(octaves))
    total -= total.min()
    return total / max(total.max(), 1e-9)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend colours a, b (3,) by weights t (...,) into (..., 3)."""
    return a * (1 - t[..., None]) + b * t[..., None]


def _bricks(rng, size, pal):
    y, x = _grid(size)
    rows = int(rng.choice([4, 8]))
    cols = rows // 2 if rng.random() < 0.5 else max(1, rows // 4)
    ry = y * rows
    row = ry.astype(int)
    bx = x * cols + 0.5 * (row % 2)
    brick = (row * 97 + (bx.astype(int) % cols)).astype(int)
    jitter = rng.uniform(0.75, 1.2, rows * 97 + cols)[brick]
    mortar_w = rng.uniform(0.08, 0.16)
    mortar = ((ry % 1.0) < mortar_w * 2) | ((bx % 1.0) < 2 * mortar_w * cols / rows)
    img = pal[0][None, None] * jitter[..., None] * (0.85 + 0.3 * _noise(rng, size, 8))[..., None]
    return np.where(mortar[..., None], pal[2] * 0.9, img)


def _tiles(rng, size, pal):
    y, x = _grid(size)
    n = int(rng.choice([2, 4]))
    ty, tx = y * n, x * n
    fy, fx = ty % 1.0, tx % 1.0
    grout = (np.minimum(fy, fx) < rng.uniform(0.05, 0.1))
    alt = ((ty.astype(int) + tx.astype(int)) % 2) == 1
    base = np.where(alt[..., None], pal[1], pal[0]) if rng.random() < 0.6 else np.broadcast_to(pal[0], y.shape + (3,))
    bevel = 1.0 + 0.15 * (fy < 0.2) - 0.15 * (fy > 0.85)
    img = base * bevel[..., None] * (0.92 + 0.16 * _noise(rng, size, 16))[..., None]
    return np.where(grout[..., None], pal[2] * 0.6, img)


def _checkers(rng, size, pal):
    y, x = _grid(size)
    n = int(rng.choice([2, 4, 8]))
    if rng.random() < 0.3:  # diamond checkers
        u, v = (x + y) * n / 2, (x - y) * n / 2
    else:
        u, v = x * n, y * n
    c = ((np.floor(u) + np.floor(v)) % 2)
    return _mix(pal[0], pal[1], c) * (0.9 + 0.2 * _noise(rng, size, 8))[..., None]


def _stripes(rng, size, pal):
    y, x = _grid(size)
    n = int(rng.choice([2, 4, 8]))
    kind = int(rng.integers(3))
    u = (x if kind == 0 else y if kind == 1 else (x + y) % 1.0) * n
    ncol = int(rng.choice([2, 3]))
    band = np.floor(u).astype(int) % ncol
    img = np.stack([pal[k] for k in range(ncol)])[band]
    return img * (0.88 + 0.24 * _noise(rng, size, 4))[..., None]


def _planks(rng, size, pal):
    y, x = _grid(size)
    n = int(rng.choice([2, 4]))
    vertical = rng.random() < 0.5
    u, v = (x, y) if vertical else (y, x)
    plank = np.floor(u * n).astype(int)
    shade = rng.uniform(0.75, 1.15, n)[plank]
    warp = _fractal(rng, size, 2, 2)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (u * n * rng.choice([3, 4, 5]) + 1.5 * warp + plank * 0.37))
    img = _mix(pal[0], pal[0] * 0.6, grain * 0.7) * shade[..., None]
    seam = (u * n) % 1.0 < 0.07
    # staggered butt joints along each plank
    joint = np.abs(((v + plank * 0.37) % 1.0) - 0.5) < 0.02
    return np.where((seam | joint)[..., None], pal[0] * 0.3, img)


def _marble(rng, size, pal):
    y, x = _grid(size)
    fx, fy = int(rng.integers(1, 3)), int(rng.integers(0, 3))
    turb = _fractal(rng, size, 2, 4)
    veins = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y + rng.uniform(1.5, 3.0) * turb))
    veins = veins ** rng.uniform(2.0, 6.0)
    return _mix(pal[0], pal[1], veins)


def _dots(rng, size, pal):
    y, x = _grid(size)
    n = int(rng.choice([2, 4]))
    fy, fx = (y * n) % 1.0 - 0.5, (x * n) % 1.0 - 0.5
    if rng.random() < 0.5:  # staggered rows
        fx = (x * n + 0.5 * (np.floor(y * n) % 2)) % 1.0 - 0.5
    r = np.sqrt(fx * fx + fy * fy)
    radius = rng.uniform(0.22, 0.4)
    dot = np.clip((radius - r) * size / n * 0.8 + 0.5, 0, 1)
    bg = pal[0] * (0.9 + 0.2 * _noise(rng, size, 4))[..., None]
    return _mix(np.zeros(3), pal[1], dot) + bg * (1 - dot)[..., None]


def _cobble(rng, size, pal):
    y, x = _grid(size)
    k = int(rng.integers(5, 12))
    pts = rng.random((k, 2))
    dy = np.abs(y[None] - pts[:, 0, None, None])
    dx = np.abs(x[None] - pts[:, 1, None, None])
    dy, dx = np.minimum(dy, 1 - dy), np.minimum(dx, 1 - dx)  # wrap around: tileable
    d = np.sqrt(dy * dy + dx * dx)
    order = np.sort(d, axis=0)
    nearest = np.argmin(d, axis=0)
    edge = (order[1] - order[0]) < rng.uniform(0.03, 0.06)
    stone = rng.uniform(0.7, 1.2, k)[nearest]
    img = _mix(pal[0], pal[1], rng.random(k)[nearest] * 0.6) * stone[..., None]
    img = img * (1.0 - 0.5 * order[0] / order[0].max())[..., None] ** 0.5
    return np.where(edge[..., None], pal[2] * 0.4, img)


_MAKERS: dict[str, Callable] = {
    "bricks": _bricks, "tiles": _tiles, "checkers": _checkers, "stripes": _stripes,
    "planks": _planks, "marble": _marble, "dots": _dots, "cobble": _cobble,
}


def _palette(rng: np.random.Generator, hue: float, family: str) -> list[np.ndarray]:
    """Three related colours: main, secondary (often a contrasting hue), accent/mortar."""
    if family == "planks":
        hue = 0.05 + 0.06 * rng.random() if rng.random() < 0.7 else hue
    s = rng.uniform(0.35, 0.9)
    v = rng.uniform(0.55, 0.95)
    main = _hsv(hue, s, v)
    offset = rng.choice([0.08, 0.33, 0.5, 0.66]) if rng.random() < 0.75 else 0.0
    second = _hsv(hue + offset, rng.uniform(0.1, 0.9), rng.uniform(0.2, 1.0))
    accent = _hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.3), rng.uniform(0.5, 0.95))
    return [main, second, accent]


@functools.lru_cache(maxsize=8)
def texture_bank(size: int = 32, variants: int = 8) -> np.ndarray:
    """The texture bank: uint8 (len(FAMILIES) * variants, size, size, 3), read-only.

    size must be a power of two >= 8 (the renderer wraps texture coordinates with
    a bit mask). Texture k belongs to family FAMILIES[k % len(FAMILIES)]. The
    result is cached; it is identical on every call and in every process.
    """
    if size < 8 or size & (size - 1):
        raise ValueError(f"texture size must be a power of two >= 8, got {size}")
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    rng = np.random.default_rng(_SEED)
    golden = 0.6180339887
    out = np.empty((len(FAMILIES) * variants, size, size, 3), np.uint8)
    for k in range(len(out)):
        family = FAMILIES[k % len(FAMILIES)]
        variant, fam_index = divmod(k, len(FAMILIES))
        # golden-ratio hue steps: variants of one family get well separated hues
        hue = (variant * golden + fam_index * 0.37 + 0.03 * rng.standard_normal()) % 1.0
        img = _MAKERS[family](rng, size, _palette(rng, hue, family))
        out[k] = np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- flat family

FLAT_WALLS = 12  # wall panels in the flat bank; floor/ceiling colours follow them
FLAT_FLOORS = 6


@functools.lru_cache(maxsize=8)
def flat_bank(size: int = 8) -> np.ndarray:
    """A bank for CPU-scale worlds: uint8 (FLAT_WALLS + FLAT_FLOORS, size, size, 3), read-only.

    Entries [0, FLAT_WALLS) are wall panels: one saturated colour (hues evenly spaced round
    the colour wheel, alternating brightness) with a dark one-texel seam at both vertical
    edges, so that where one wall segment ends is visible and walking past it moves the seam.
    Entries [FLAT_WALLS, FLAT_WALLS + FLAT_FLOORS) are plain, unsaturated floor/ceiling
    colours. Without texture detail a frame is a few large flat regions: a small tokenizer
    codes it with few distinct codes, and what changes between frames is geometry alone.
    """
    if size < 8 or size & (size - 1):
        raise ValueError(f"texture size must be a power of two >= 8, got {size}")
    out = np.empty((FLAT_WALLS + FLAT_FLOORS, size, size, 3), np.float64)
    for k in range(FLAT_WALLS):
        out[k] = _hsv(k / FLAT_WALLS, 0.75, 0.95 if k % 2 == 0 else 0.7)
        out[k, :, [0, size - 1]] *= 0.35  # the seams (texture columns u = 0 and u = size-1)
    for k in range(FLAT_FLOORS):
        out[FLAT_WALLS + k] = _hsv(k / FLAT_FLOORS + 0.08, 0.2, 0.3 + 0.5 * k / (FLAT_FLOORS - 1))
    bank = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    bank.flags.writeable = False
    return bank
