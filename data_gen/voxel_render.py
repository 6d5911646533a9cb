"""The voxel world's renderer: one ray per pixel through the block grid, compiled with numba.

A column-by-column DDA with per-column height skipping (rays pass over whole tiles of columns
lower than themselves) finds the face a ray hits; the face is textured (mipmapped by
distance), shaded by its normal and fogged towards the sky colour, and sprites (tall grass,
flowers, lily pads) are drawn where a ray crosses their cell. Rays that hit nothing within
the view distance see a sky gradient, the sun and drifting clouds. The terrain tiles, so rays
wrap around the world. `render_frames` is the entry point; `data_gen.voxel` calls it.

One module (about 480 lines) because numba inlines these kernels into each other; the ray
walk `_trace` alone is 210 lines, kept whole so its hot loop stays readable in one place.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from data_gen import voxel_world as vw
from data_gen.voxel_world import World


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


@njit(cache=True, fastmath=_FM, inline="always")
def _axis_start(d, p, i, t0):
    """One axis of the grid walk, for a ray at coordinate p (in cell i) at time t0 moving by d per
    unit of t: (the step to the next cell, -1, 0 or 1; the time per cell; the time it first
    crosses a cell border). A ray that does not move along the axis never crosses one."""
    if d > 0:
        td = 1.0 / d
        return 1, td, t0 + (i + 1 - p) * td
    if d < 0:
        td = -1.0 / d
        return -1, td, t0 + (p - i) * td
    return 0, _BIG, _BIG


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
        sx, tdx, tmx = _axis_start(dx, px, ix, t0)
        sy, tdy, tmy = _axis_start(dy, py, iy, t0)
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
                  config, frame_index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render cameras at `eye` (T, 3) [x, y, z] with headings `yaw` (T,) and `pitch` (radians).

    Returns (frames uint8 (T, H, W, 3), counts int32 (T, 2): sky pixels, pixels with water in front).
    frame_index (T,) sets how far the clouds have drifted (default 0, 1, ...). `config` is a
    `data_gen.voxel.VoxelConfig`; its resolution, fov_deg, view_distance and fog_start are read.
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
