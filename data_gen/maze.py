"""DMLab-style 3D maze episodes: an agent walks around a random textured maze.

Like TECO's DMLab data: each episode is a random `size` x `size` maze (a perfect
maze plus a few extra openings that make loops) with random wall, floor and
ceiling textures. An agent walks to target cells along shortest paths (BFS over
the cell graph), patrolling a small, slowly drifting tour of nearby targets, so it
keeps coming back to places it has seen, often facing the same way. Frames are
rendered first-person with textured ray casting (Wolfenstein-style): one ray per
pixel column marched cell by cell through the grid, fish-eye corrected wall
distances, textured walls, and per-pixel floor/ceiling casting with distance
shading. All rendering is vectorized numpy.

One module (about 740 lines) because layout, walk, renderer and CLI share the maze's cell
conventions and its MazeConfig; each is a section below, in that order.

Geometry. Positions are in cell units: cell (i, j) spans [i, i+1) x [j, j+1),
x along the first index, y along the second. The heading theta (radians) looks
along (cos theta, sin theta); turning left increases theta. Walls are thin
segments on the cell boundaries. The agent is a square of half-width
`config.margin` that may not overlap any wall.

Layout. `layout` is a (2*size+1, 2*size+1) block grid indexed [x-block, y-block]
with 1 = wall, 0 = open: cell (i, j) is block (2i+1, 2j+1), the wall between
cells (i, j) and (i+1, j) is block (2i+2, 2j+1), the one between (i, j) and
(i, j+1) is block (2i+1, 2j+2), and a corner block (2i, 2j) is 1 iff a wall
touches that lattice point.

Actions (index order): forward, backward, strafe_left, strafe_right, turn_left,
turn_right. actions[t] is the action that took the agent from its state at
frame t-1 to frame t (one step is simulated before frame 0).

Usage:
    python -m data_gen.maze --episodes 1000 --out data/maze --seed 0 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import deque
from collections.abc import Sequence

import numpy as np

from data_gen.common import Generator, add_common_flags, run
from data_gen.textures import FLAT_FLOORS, FLAT_WALLS, flat_bank, texture_bank
from teco_jax.revisit import revisit_mask, wrap_angle

ACTIONS = ("forward", "backward", "strafe_left", "strafe_right", "turn_left", "turn_right")
FORWARD, BACKWARD, STRAFE_LEFT, STRAFE_RIGHT, TURN_LEFT, TURN_RIGHT = range(6)

REVISIT_SPLIT = 144  # summarize(): frames [0, 144) are the memory, [144, T) are scored
REVISIT_MAX_ANGLE = math.pi / 4
TEXTURE_FAMILIES = ("mixed", "flat")


@dataclasses.dataclass(frozen=True)
class MazeConfig:
    """Everything that defines a maze dataset (stored in meta.json by common.run).

    size: cells per side. resolution: frame height = width in pixels.
    episode_length: frames per episode. extra_openings: walls removed on top of a
    perfect maze, creating loops. fov_degrees: horizontal field of view.
    move_step: forward step (cells). side_step: backward/strafe step (cells).
    turn_degrees: heading change of one turn action. margin: half-width of the
    agent's collision square (cells). random_action_prob: chance per step of a
    random action instead of the navigation one. look_around_prob: chance, on
    reaching a target, of turning on the spot by 90..360 degrees.
    tour_size: number of target cells the agent patrols in cyclic order.
    explore_prob: chance, on reaching a target, that the next tour stop is
    replaced by a fresh random cell. target_radius: fresh targets lie within this
    many steps of the agent's cell (0 = anywhere). wall_textures: distinct wall
    textures per episode (each wall segment gets one of them at random).
    texture_size: texels per texture side (power of two). shade_levels, fog:
    distance shading (fog = 0 turns it off). tint: max per-episode random
    lighting tint per channel. texture_family: "mixed" (the patterned bank of
    data_gen.textures.texture_bank) or "flat" (flat_bank: flat wall colours with seams,
    plain floor and ceiling; for the CPU-scale preset). cell_moves: the agent stands on
    cell centres facing one of the four axis directions; forward, backward and strafe move
    one whole cell (when no wall is in between) and a turn is 90 degrees, so every place
    and view recurs exactly (move_step, side_step, turn_degrees and margin are then unused).
    """

    size: int = 7
    resolution: int = 64
    episode_length: int = 300
    extra_openings: int = 4
    fov_degrees: float = 70.0
    move_step: float = 0.15
    side_step: float = 0.1
    turn_degrees: float = 15.0
    margin: float = 0.2
    random_action_prob: float = 0.08
    look_around_prob: float = 0.2
    tour_size: int = 3
    explore_prob: float = 0.25
    target_radius: int = 8
    wall_textures: int = 3
    texture_size: int = 32
    shade_levels: int = 32
    fog: float = 0.18
    tint: float = 0.15
    texture_family: str = "mixed"
    cell_moves: bool = False

    def validate(self) -> None:
        """Raise ValueError with a readable message for settings that cannot work."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(self.size >= 2, f"size must be >= 2 cells, got {self.size}")
        need(self.resolution >= 8, f"resolution must be >= 8 pixels, got {self.resolution}")
        need(self.episode_length >= 1, f"episode_length must be >= 1, got {self.episode_length}")
        need(self.extra_openings >= 0, f"extra_openings must be >= 0, got {self.extra_openings}")
        need(10.0 <= self.fov_degrees <= 150.0, f"fov_degrees must be in [10, 150], got {self.fov_degrees}")
        need(0.0 < self.margin < 0.4, f"margin must be in (0, 0.4), got {self.margin}")
        # Steps must stay below the margin so that a step can never hop over a wall.
        need(0.0 < self.move_step <= self.margin and 0.0 < self.side_step <= self.margin,
             f"move_step and side_step must be in (0, margin={self.margin}], "
             f"got {self.move_step}, {self.side_step}")
        need(0.0 < self.turn_degrees <= 90.0, f"turn_degrees must be in (0, 90], got {self.turn_degrees}")
        need(self.tour_size >= 2, f"tour_size must be >= 2, got {self.tour_size}")
        need(self.target_radius >= 0, f"target_radius must be >= 0, got {self.target_radius}")
        for name in ("random_action_prob", "look_around_prob", "explore_prob"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")
        need(self.wall_textures >= 1, f"wall_textures must be >= 1, got {self.wall_textures}")
        ts = self.texture_size
        need(ts >= 8 and ts & (ts - 1) == 0, f"texture_size must be a power of two >= 8, got {ts}")
        need(self.shade_levels >= 1, f"shade_levels must be >= 1, got {self.shade_levels}")
        need(self.fog >= 0.0, f"fog must be >= 0, got {self.fog}")
        need(0.0 <= self.tint < 1.0, f"tint must be in [0, 1), got {self.tint}")
        need(self.texture_family in TEXTURE_FAMILIES,
             f"texture_family must be one of {TEXTURE_FAMILIES}, got {self.texture_family!r}")
        if self.texture_family == "flat":
            need(self.wall_textures <= FLAT_WALLS,
                 f"the flat family has {FLAT_WALLS} wall colours, got wall_textures={self.wall_textures}")


# ----------------------------------------------------------------------------- maze


def _cell_move(layout: np.ndarray, x: float, y: float, cx: int, cy: int, action: int) -> tuple[float, float]:
    """cell_moves: the position after a translation action from the centre (x, y) when facing
    the axis direction (cx, cy); unchanged when a wall is in the way."""
    dx, dy = {FORWARD: (cx, cy), BACKWARD: (-cx, -cy), STRAFE_LEFT: (-cy, cx), STRAFE_RIGHT: (cy, -cx)}[action]
    i, j = int(x), int(y)
    if layout[2 * i + 1 + dx, 2 * j + 1 + dy]:
        return x, y
    return x + dx, y + dy


def make_maze(rng: np.random.Generator, size: int, extra_openings: int = 0) -> np.ndarray:
    """A random maze as a (2*size+1, 2*size+1) uint8 block grid (see module doc).

    A perfect maze by randomized depth-first search, then `extra_openings`
    randomly chosen remaining interior walls are removed (fewer if there are not
    that many).
    """
    g = 2 * size + 1
    grid = np.ones((g, g), np.uint8)
    grid[1::2, 1::2] = 0
    seen = np.zeros((size, size), bool)
    start = (int(rng.integers(size)), int(rng.integers(size)))
    seen[start] = True
    stack = [start]
    dirs = ((1, 0), (-1, 0), (0, 1), (0, -1))
    while stack:
        i, j = stack[-1]
        options = [(i + di, j + dj) for di, dj in dirs
                   if 0 <= i + di < size and 0 <= j + dj < size and not seen[i + di, j + dj]]
        if not options:
            stack.pop()
            continue
        ni, nj = options[int(rng.integers(len(options)))]
        grid[i + ni + 1, j + nj + 1] = 0  # the wall block between the two cells
        seen[ni, nj] = True
        stack.append((ni, nj))
    if extra_openings > 0:
        # remaining interior walls: blocks with one odd and one even coordinate, not on the border
        walls = [(a, b) for a in range(1, g - 1) for b in range(1, g - 1)
                 if (a + b) % 2 == 1 and grid[a, b]]
        k = min(extra_openings, len(walls))
        for w in rng.choice(len(walls), size=k, replace=False):
            grid[walls[w]] = 0
    # corner blocks: wall iff a wall segment touches the lattice point
    c = grid[::2, ::2]
    touch = np.zeros_like(c)
    touch[:-1] |= grid[1::2, ::2]
    touch[1:] |= grid[1::2, ::2]
    touch[:, :-1] |= grid[::2, 1::2]
    touch[:, 1:] |= grid[::2, 1::2]
    grid[::2, ::2] = touch
    return grid


def cell_neighbors(layout: np.ndarray) -> list[list[int]]:
    """Open neighbours of every cell; cells are numbered i * size + j."""
    size = layout.shape[0] // 2
    out = []
    for i in range(size):
        for j in range(size):
            nb = []
            if layout[2 * i + 2, 2 * j + 1] == 0:
                nb.append((i + 1) * size + j)
            if layout[2 * i, 2 * j + 1] == 0:
                nb.append((i - 1) * size + j)
            if layout[2 * i + 1, 2 * j + 2] == 0:
                nb.append(i * size + j + 1)
            if layout[2 * i + 1, 2 * j] == 0:
                nb.append(i * size + j - 1)
            out.append(nb)
    return out


def bfs_distances(neighbors: Sequence[Sequence[int]], source: int) -> list[int]:
    """Steps from `source` to every cell along open passages (-1 if unreachable)."""
    dist = [-1] * len(neighbors)
    dist[source] = 0
    queue = deque([source])
    while queue:
        c = queue.popleft()
        for n in neighbors[c]:
            if dist[n] < 0:
                dist[n] = dist[c] + 1
                queue.append(n)
    return dist


def bfs_next_hop(neighbors: Sequence[Sequence[int]], target: int) -> list[int]:
    """next_hop[c]: the neighbour of cell c one step closer to `target` (target itself for c = target)."""
    hop = [-1] * len(neighbors)
    hop[target] = target
    queue = deque([target])
    while queue:
        c = queue.popleft()
        for n in neighbors[c]:
            if hop[n] < 0:
                hop[n] = c
                queue.append(n)
    return hop


# ----------------------------------------------------------------------------- agent


def simulate(rng: np.random.Generator, layout: np.ndarray, config: MazeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Run the navigating agent; returns (pose float32 (T, 3) [x, y, heading], actions int32 (T,)).

    The policy walks from cell centre to cell centre along shortest paths to
    target cells (a small tour patrolled in cyclic order, see tour_size), turning
    on the spot towards the next waypoint, sometimes looking around at a target
    and sometimes taking a random action.
    """
    size = layout.shape[0] // 2
    g = layout.shape[0]
    T = config.episode_length
    wall = layout.ravel().tolist()
    m = config.margin
    lo, hi = m, 1.0 - m

    def free(x: float, y: float) -> bool:
        i, j = int(x), int(y)
        fx, fy = x - i, y - j
        cx, cy = 2 * i + 1, 2 * j + 1
        bx = cx - 1 if fx < lo else (cx + 1 if fx > hi else cx)
        by = cy - 1 if fy < lo else (cy + 1 if fy > hi else cy)
        return not (wall[bx * g + by] or wall[bx * g + cy] or wall[cx * g + by])

    neighbors = cell_neighbors(layout)
    hops: dict[int, list[int]] = {}
    ncell = size * size
    turn = math.radians(90.0 if config.cell_moves else config.turn_degrees)
    half_turn = 0.5 * turn + 1e-9
    reach2 = 0.25 ** 2

    # Pre-drawn randomness for the per-step decisions (cheaper than one call per step).
    u_random = rng.random(T)
    random_pick = rng.integers(1, 6, T)  # any action but forward

    start = int(rng.integers(ncell))
    if config.cell_moves:
        x, y = start // size + 0.5, start % size + 0.5
        th = wrap_angle(0.5 * math.pi * int(rng.integers(4)))
    else:
        x = start // size + 0.5 + rng.uniform(-0.2, 0.2)
        y = start % size + 0.5 + rng.uniform(-0.2, 0.2)
        th = wrap_angle(rng.uniform(-math.pi, math.pi))

    def random_cell(cur: int) -> int:
        """A random cell other than cur, within target_radius steps of it when that is set."""
        if config.target_radius > 0:
            near = [c for c, d in enumerate(bfs_distances(neighbors, cur))
                    if 0 < d <= config.target_radius]
            if near:
                return near[int(rng.integers(len(near)))]
        t = int(rng.integers(ncell - 1))
        return t + (t >= cur)

    # The agent patrols a small tour of target cells in a fixed cyclic order, so it
    # passes the same places in the same direction again; now and then a tour stop is
    # replaced by a fresh random cell, so the tour drifts through the maze.
    tour = [start]
    for _ in range(config.tour_size - 1):
        tour.append(random_cell(tour[-1]))
    stop = 0
    target = start
    wp = start  # current waypoint cell; the agent heads for its centre
    queued: list[int] = []  # queued actions (look-around turns)
    since_progress = 0

    def new_target(cur: int) -> int:
        nonlocal stop
        stop = (stop + 1) % len(tour)
        if tour[stop] == cur or rng.random() < config.explore_prob:
            tour[stop] = random_cell(cur)
        return tour[stop]

    poses = np.empty((T, 3), np.float64)
    actions = np.empty(T, np.int32)
    for step in range(T):  # step 0 moves the agent from its spawn state into frame 0
        cell = int(x) * size + int(y)
        if wp != cell and wp not in neighbors[cell]:
            wp = cell  # pushed off the path (random moves): re-centre first
        wx, wy = wp // size + 0.5, wp % size + 0.5
        if (x - wx) ** 2 + (y - wy) ** 2 < reach2:
            since_progress = 0
            if wp == target:
                target = new_target(wp)
                if rng.random() < config.look_around_prob:
                    turns = max(1, round(rng.uniform(90.0, 360.0) / config.turn_degrees))
                    queued = [TURN_LEFT if rng.random() < 0.5 else TURN_RIGHT] * turns
            hop = hops.get(target)
            if hop is None:
                hop = hops[target] = bfs_next_hop(neighbors, target)
            wp = hop[wp]
            wx, wy = wp // size + 0.5, wp % size + 0.5
        else:
            since_progress += 1
            if since_progress > 40:  # stuck against a corner: aim for the current cell's centre
                wp, since_progress = cell, 0
                wx, wy = wp // size + 0.5, wp % size + 0.5

        if queued:
            a = queued.pop()
        elif u_random[step] < config.random_action_prob:
            a = int(random_pick[step])
        else:
            ex, ey = wx - x, wy - y
            diff = wrap_angle(math.atan2(ey, ex) - th)
            # Walk on while the heading line passes close enough to the waypoint, so the agent
            # does not zigzag with tiny corrections; otherwise turn towards it.
            miss = abs(math.sin(diff)) * math.sqrt(ex * ex + ey * ey)
            if abs(diff) <= half_turn or (abs(diff) < 0.5 * math.pi and miss < 0.15):
                a = FORWARD
            else:
                a = TURN_LEFT if diff > 0 else TURN_RIGHT

        c, s = math.cos(th), math.sin(th)
        dx = dy = 0.0
        if config.cell_moves and a < TURN_LEFT:  # turns are the same, with turn = 90 degrees
            x, y = _cell_move(layout, x, y, round(c), round(s), a)
        elif a == FORWARD:
            dx, dy = config.move_step * c, config.move_step * s
        elif a == BACKWARD:
            dx, dy = -config.side_step * c, -config.side_step * s
        elif a == STRAFE_LEFT:
            dx, dy = -config.side_step * s, config.side_step * c
        elif a == STRAFE_RIGHT:
            dx, dy = config.side_step * s, -config.side_step * c
        elif a == TURN_LEFT:
            th = wrap_angle(th + turn)
        else:
            th = wrap_angle(th - turn)
        if dx and free(x + dx, y):
            x += dx
        if dy and free(x, y + dy):
            y += dy
        poses[step] = (x, y, th)  # the state this action led to: frame `step`
        actions[step] = a
    return poses.astype(np.float32), actions


# ----------------------------------------------------------------------------- rendering

SHADE_STEP = 0.25  # cells of distance per shade level
Y_SIDE_SHADE = 0.78  # walls facing +-y are drawn darker, a cheap directional light


def _shade_factors(config: MazeConfig) -> np.ndarray:
    """Brightness of each distance shade level, (shade_levels,)."""
    d = (np.arange(config.shade_levels) + 0.5) * SHADE_STEP
    return np.maximum(np.exp(-config.fog * d), 0.15)


def textures_of(config: MazeConfig) -> np.ndarray:
    """The texture bank that config.texture_family names."""
    if config.texture_family == "flat":
        return flat_bank(config.texture_size)
    return texture_bank(config.texture_size)


def episode_textures(rng: np.random.Generator, config: MazeConfig) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Draw an episode's look: (wall texture ids (K,), floor id, ceiling id, RGB tint (3,))."""
    k = config.wall_textures
    if config.texture_family == "flat":
        walls = rng.choice(FLAT_WALLS, size=k, replace=False)
        floor, ceil = rng.choice(FLAT_FLOORS, size=2, replace=False) + FLAT_WALLS
        tint = rng.uniform(1.0 - config.tint, 1.0 + config.tint, 3)
        return walls, int(floor), int(ceil), tint
    bank_size = len(texture_bank(config.texture_size))
    ids = rng.choice(bank_size, size=k + 2, replace=k + 2 > bank_size)
    tint = rng.uniform(1.0 - config.tint, 1.0 + config.tint, 3) * rng.uniform(0.85, 1.1)
    return ids[:k], int(ids[k]), int(ids[k + 1]), tint


def build_table(wall_ids: np.ndarray, floor_id: int, ceil_id: int, tint: np.ndarray,
                config: MazeConfig) -> np.ndarray:
    """The episode's colour lookup table: uint32 packed RGBA texels, pre-shaded.

    Layout (TS = texture_size, L = shade_levels, K = len(wall_ids)):
      walls  [K, 2 sides, L, TS (u = texture column), TS (v = texture row)]
      floor  [L, TS (row), TS (column)]      at offset K*2*L*TS*TS
      ceiling, same layout as floor          at offset (K*2+1)*L*TS*TS
    Walls are stored column-major so that a screen column reads consecutive texels.
    """
    bank = textures_of(config).astype(np.float32)
    shade = _shade_factors(config).astype(np.float32)
    side = np.array([1.0, Y_SIDE_SHADE], np.float32)
    tint = np.asarray(tint, np.float32)
    walls = bank[np.asarray(wall_ids)].transpose(0, 2, 1, 3)  # (K, u, v, 3)
    walls = (walls[:, None, None] * (side[None, :, None, None, None, None]
                                     * shade[None, None, :, None, None, None]) * tint)
    flats = bank[[floor_id, ceil_id]][:, None] * shade[None, :, None, None, None] * tint
    rgb = np.concatenate([walls.reshape(-1, 3), flats.reshape(-1, 3)])
    rgba = np.empty((len(rgb), 4), np.uint8)
    rgba[:, :3] = np.clip(rgb + 0.5, 0, 255)
    rgba[:, 3] = 255
    return rgba.view(np.uint32).ravel()


def cast_rays(layout: np.ndarray, pose: np.ndarray, config: MazeConfig):
    """March one ray per pixel column through the cell grid (DDA).

    Returns per (frame, column): perpendicular wall distance d (T, R), ray
    directions rdx, rdy (T, R) scaled so that their component along the view
    direction is 1, whether the hit wall is x-facing (T, R) bool, the hit wall
    block's flat index in `layout` (T, R), and the hit point along the wall in
    [0, 1) oriented left to right as seen (T, R).
    """
    r = config.resolution
    g = layout.shape[0]
    focal = 0.5 * r / math.tan(math.radians(config.fov_degrees) / 2)
    cam = (np.arange(r) + 0.5 - 0.5 * r) / focal
    pose = np.asarray(pose, np.float64)
    c, s = np.cos(pose[:, 2])[:, None], np.sin(pose[:, 2])[:, None]
    rdx = c + s * cam  # view direction + camera-plane offset; the plane points right, (sin, -cos)
    rdy = s - c * cam
    shape = rdx.shape
    px = np.broadcast_to(pose[:, 0:1], shape).ravel()
    py = np.broadcast_to(pose[:, 1:2], shape).ravel()
    rx, ry = rdx.ravel(), rdy.ravel()
    mx, my = np.floor(px), np.floor(py)
    with np.errstate(divide="ignore"):
        ddx, ddy = np.abs(1.0 / rx), np.abs(1.0 / ry)
    negx, negy = rx < 0, ry < 0
    side_x = np.where(negx, px - mx, mx + 1.0 - px) * ddx
    side_y = np.where(negy, py - my, my + 1.0 - py) * ddy
    step_x = np.where(negx, -g, g)
    step_y = np.where(negy, -1, 1)
    cur = (2 * mx.astype(np.intp) + 1) * g + 2 * my.astype(np.intp) + 1
    solid = layout.ravel().astype(bool)

    n = px.size
    dist = np.empty(n)
    xside = np.empty(n, bool)
    block = np.empty(n, np.intp)
    idx = np.arange(n)
    for _ in range(2 * g):  # the border is solid: every ray stops within 2*size crossings
        xs = side_x < side_y
        stp = np.where(xs, step_x, step_y)
        wb = cur + stp
        hit = solid[wb]
        if hit.any():
            h = idx[hit]
            dist[h] = np.where(xs, side_x, side_y)[hit]
            xside[h] = xs[hit]
            block[h] = wb[hit]
            keep = ~hit
            if not keep.any():
                break
            idx, wb, stp, xs = idx[keep], wb[keep], stp[keep], xs[keep]
            side_x, side_y, ddx, ddy = side_x[keep], side_y[keep], ddx[keep], ddy[keep]
            step_x, step_y = step_x[keep], step_y[keep]
        cur = wb + stp
        np.add(side_x, ddx, out=side_x, where=xs)
        np.add(side_y, ddy, out=side_y, where=~xs)
    else:
        raise RuntimeError("a ray left the maze: the layout border must be solid")
    dist = np.maximum(dist, 1e-3)
    hitc = np.where(xside, py + dist * ry, px + dist * rx)
    u = hitc - np.floor(hitc)
    flip = np.where(xside, rx > 0, ry < 0)
    u = np.where(flip, 1.0 - u, u)
    return (dist.reshape(shape), rdx, rdy, xside.reshape(shape), block.reshape(shape), u.reshape(shape))


def render(layout: np.ndarray, pose: np.ndarray, config: MazeConfig, wall_slot: np.ndarray | None = None,
           table: np.ndarray | None = None, out: np.ndarray | None = None, chunk: int = 24) -> np.ndarray:
    """First-person frames for poses (T, 3) in a maze: uint8 (T, R, R, 3).

    wall_slot: (2*size+1,)*2 int, which of the table's wall textures each wall
    block uses (default all 0). table: from build_table (default: the first
    bank textures, no tint). Frames are drawn `chunk` at a time to stay in cache.
    """
    config.validate()
    pose = np.asarray(pose)
    T, r, ts = len(pose), config.resolution, config.texture_size
    L = config.shade_levels
    if table is None:
        table = build_table(np.array([0]), 1, 2, np.ones(3), config)
    if wall_slot is None:
        wall_slot = np.zeros(layout.shape, np.int32)
    if out is None:
        out = np.empty((T, r, r, 3), np.uint8)
    num_walls = (len(table) // (L * ts * ts) - 2) // 2
    floor_base = num_walls * 2 * L * ts * ts
    ceil_delta = L * ts * ts
    focal = 0.5 * r / math.tan(math.radians(config.fov_degrees) / 2)
    shift = ts.bit_length() - 1

    dist, rdx, rdy, xside, block, u = cast_rays(layout, pose, config)
    level = np.minimum((dist * (1.0 / SHADE_STEP)).astype(np.int32), L - 1)
    slot = wall_slot.ravel().astype(np.int32)[block]
    texcol = np.minimum((u * ts).astype(np.int32), ts - 1)
    colbase = (((slot * 2 + (~xside)) * L + level) * ts + texcol) * ts  # (T, r) int
    colbase = colbase.astype(np.int32)
    dist32 = dist.astype(np.float32)
    rdx_ts = (rdx * ts).astype(np.float32)
    rdy_ts = (rdy * ts).astype(np.float32)
    px_ts = (pose[:, 0] * ts).astype(np.float32)
    py_ts = (pose[:, 1] * ts).astype(np.float32)

    # Per-row constants. Row y looks at v = y + 0.5 - r/2 pixels below the horizon.
    v = np.arange(r) + 0.5 - 0.5 * r
    vts = (v * ts / focal).astype(np.float32)[None, :, None]
    half = r // 2
    f0 = r - half  # first floor row; rows [0, half) are ceiling, mirrored
    rowdist = 0.5 * focal / v[f0:]  # perpendicular distance of the floor seen in each floor row
    rowdist32 = rowdist.astype(np.float32)[None, :, None]
    rowbase = (floor_base + np.minimum((rowdist / SHADE_STEP).astype(np.int64), L - 1) * ts * ts)
    rowbase = rowbase.astype(np.int32)[None, :, None]
    mask = np.int32(ts - 1)

    n = min(chunk, T)
    a = np.empty((n, r, r), np.float32)
    ti = np.empty((n, r, r), np.int32)
    wall = np.empty((n, r, r), bool)
    idx = np.zeros((n, r, r), np.int32)
    f = np.empty((n, half, r), np.float32)
    tx = np.empty((n, half, r), np.int32)
    ty = np.empty((n, half, r), np.int32)
    rgba = np.empty((n, r, r), np.uint32)
    for t0 in range(0, T, n):
        k = min(n, T - t0)
        sl = slice(t0, t0 + k)
        A, TI, WALL, IDX, FF, TX, TY, RGBA = (x[:k] for x in (a, ti, wall, idx, f, tx, ty, rgba))
        # walls: texture row of every pixel; the pixel shows wall iff it lies in [0, ts)
        np.multiply(vts, dist32[sl, None, :], out=A)
        A += 1.5 * ts  # keep it positive near the wall's ends, so truncation == floor there
        TI[...] = A
        TI -= ts
        np.less(TI.view(np.uint32), ts, out=WALL)
        TI += colbase[sl, None, :]
        # floor: texel of the floor point seen by each pixel; the ceiling mirrors it
        np.multiply(rowdist32, rdx_ts[sl, None, :], out=FF)
        FF += px_ts[sl, None, None]
        TX[...] = FF
        TX &= mask
        np.multiply(rowdist32, rdy_ts[sl, None, :], out=FF)
        FF += py_ts[sl, None, None]
        TY[...] = FF
        TY &= mask
        TY <<= shift
        TY |= TX
        np.add(TY, rowbase, out=IDX[:, f0:])
        np.add(IDX[:, f0:], ceil_delta, out=IDX[:, half - 1::-1])
        np.copyto(IDX, TI, where=WALL)
        np.take(table, IDX, out=RGBA)
        out[sl] = RGBA.view(np.uint8).reshape(k, r, r, 4)[..., :3]
    return out


# ----------------------------------------------------------------------------- dataset API


def _episode_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x6D617A65]))


def generate(seeds: np.ndarray, config: MazeConfig) -> dict[str, np.ndarray]:
    """Render one episode per seed. Episode b depends only on seeds[b] and config.

    Returns video uint8 (B, T, R, R, 3), actions int32 (B, T), pose float32
    (B, T, 3) [x, y, heading], layout uint8 (B, 2*size+1, 2*size+1).
    """
    config.validate()
    seeds = np.asarray(seeds).reshape(-1)
    b_, t_, r, g = len(seeds), config.episode_length, config.resolution, 2 * config.size + 1
    video = np.empty((b_, t_, r, r, 3), np.uint8)
    actions = np.empty((b_, t_), np.int32)
    poses = np.empty((b_, t_, 3), np.float32)
    layouts = np.empty((b_, g, g), np.uint8)
    for b, seed in enumerate(seeds):
        rng = _episode_rng(int(seed))
        layout = make_maze(rng, config.size, config.extra_openings)
        wall_ids, floor_id, ceil_id, tint = episode_textures(rng, config)
        wall_slot = rng.integers(0, len(wall_ids), layout.shape).astype(np.int32)
        pose, act = simulate(rng, layout, config)
        table = build_table(wall_ids, floor_id, ceil_id, tint, config)
        render(layout, pose, config, wall_slot, table, out=video[b])
        layouts[b], poses[b], actions[b] = layout, pose, act
    return {"video": video, "actions": actions, "pose": poses, "layout": layouts}


def revisit_fraction(pose: np.ndarray, split: int = REVISIT_SPLIT,
                     max_angle: float = REVISIT_MAX_ANGLE) -> np.ndarray:
    """Per episode: fraction of frames [split, T) whose cell was seen in frames [0, split) with a
    heading within max_angle (radians) of one seen there (`teco_jax.revisit.revisit_mask`).
    pose (B, T, 3) -> (B,) float; nan if T <= split."""
    pose = np.asarray(pose, np.float64)
    if pose.shape[1] <= split:
        return np.full(pose.shape[0], np.nan)
    return revisit_mask(pose, split, math.degrees(max_angle)).mean(axis=-1)


def summarize(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"revisit_fraction": (B,)}, see revisit_fraction; episodes of at most REVISIT_SPLIT
    frames (the cpu preset's) split at their middle instead."""
    t = batch["pose"].shape[1]
    return {"revisit_fraction": revisit_fraction(batch["pose"], REVISIT_SPLIT if t > REVISIT_SPLIT else t // 2)}


GENERATOR = Generator(name="maze", generate=generate, action_names=ACTIONS, summarize=summarize)


# ----------------------------------------------------------------------------- presets

# Named starting points for the CLI's --preset (explicit flags override them).
# "dmlab": the DMLab-style 64x64 world of TECO's benchmark. "cpu": a world in which a small
# TECO learns dynamics and memory within minutes on a 2-core CPU (docs/cpu_world.md gives
# the measurements behind each setting): 32x32 frames, flat-coloured walls with seams and
# plain floors (few, large regions instead of texture detail), a 7x7 maze patrolled by a
# 3-target tour so places come back, 128-frame episodes, and cell moves (a whole cell per
# step, 90-degree turns) so that a place revisited looks exactly as it did.
# "smooth" (alias "cpu_smooth"): the cpu world with the dmlab world's smooth motion (15-degree turns,
# 0.15-cell steps) in a 5x5 maze, so no view recurs exactly: the world of the pose memory.
_CPU_SMOOTH = MazeConfig(size=5, resolution=32, episode_length=128, texture_family="flat", texture_size=8,
                         wall_textures=4, tint=0.1, fog=0.12, shade_levels=8, target_radius=4)
PRESETS = {
    "dmlab": MazeConfig(),
    "cpu": dataclasses.replace(_CPU_SMOOTH, size=7, target_radius=8, cell_moves=True),
    "cpu_smooth": _CPU_SMOOTH,
    "smooth": _CPU_SMOOTH,
}


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_gen.maze",
        description="Write DMLab-style 3D maze episodes (first-person, textured ray casting) as npz files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_flags(parser)
    d = MazeConfig()
    maze = parser.add_argument_group("maze (defaults: the --preset's; the values shown are dmlab's)")
    maze.add_argument("--preset", choices=sorted(PRESETS), default="dmlab",
                      help="a named world; any flag below overrides one of its settings")
    maze.add_argument("--size", type=int, default=d.size, help="maze cells per side (>= 2)")
    maze.add_argument("--resolution", type=int, default=d.resolution, help="frame height = width in pixels (>= 8)")
    maze.add_argument("--episode_length", type=int, default=d.episode_length, help="frames per episode")
    maze.add_argument("--extra_openings", type=int, default=d.extra_openings,
                      help="walls removed on top of the perfect maze (make loops)")
    maze.add_argument("--fov", dest="fov_degrees", type=float, default=d.fov_degrees,
                      help="horizontal field of view in degrees")
    maze.add_argument("--move_step", type=float, default=d.move_step, help="forward step in cells (<= margin)")
    maze.add_argument("--side_step", type=float, default=d.side_step,
                      help="backward/strafe step in cells (<= margin)")
    maze.add_argument("--turn_degrees", type=float, default=d.turn_degrees, help="heading change per turn action")
    maze.add_argument("--margin", type=float, default=d.margin, help="agent half-width: closest approach to a wall")
    maze.add_argument("--random_action_prob", type=float, default=d.random_action_prob,
                      help="chance per step of a random action")
    maze.add_argument("--look_around_prob", type=float, default=d.look_around_prob,
                      help="chance of turning on the spot at a reached target")
    maze.add_argument("--tour_size", type=int, default=d.tour_size,
                      help="target cells the agent patrols in cyclic order (>= 2)")
    maze.add_argument("--explore_prob", type=float, default=d.explore_prob,
                      help="chance at each reached target of replacing the next tour stop by a fresh cell")
    maze.add_argument("--target_radius", type=int, default=d.target_radius,
                      help="fresh targets lie within this many steps of the agent (0 = anywhere)")
    maze.add_argument("--wall_textures", type=int, default=d.wall_textures, help="distinct wall textures per episode")
    maze.add_argument("--texture_size", type=int, default=d.texture_size, help="texels per texture side (power of 2)")
    maze.add_argument("--fog", type=float, default=d.fog, help="distance darkening rate (0 = off)")
    maze.add_argument("--shade_levels", type=int, default=d.shade_levels, help="distance shading levels")
    maze.add_argument("--tint", type=float, default=d.tint, help="max per-episode lighting tint per channel")
    maze.add_argument("--texture_family", choices=TEXTURE_FAMILIES, default=d.texture_family,
                      help="mixed: patterned textures; flat: flat wall colours with seams, plain floors")
    maze.add_argument("--cell_moves", action=argparse.BooleanOptionalAction, default=d.cell_moves,
                      help="move a whole cell and turn 90 degrees per action (places and views recur exactly)")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse the CLI: flags left out take the --preset's values."""
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    parser.set_defaults(**dataclasses.asdict(PRESETS[pre.preset]))
    return parser, parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> MazeConfig:
    fields = {f.name for f in dataclasses.fields(MazeConfig)}
    cfg = MazeConfig(**{k: v for k, v in vars(args).items() if k in fields})
    cfg.validate()
    return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser, args = parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    return run(GENERATOR, cfg, args)


if __name__ == "__main__":
    main(sys.argv[1:])
