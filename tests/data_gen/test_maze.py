"""Tests for the DMLab-style maze generator (data_gen.maze) and its texture bank."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque

import numpy as np
import pytest

from data_gen import maze
from data_gen.common import episode_seeds
from data_gen.maze import ACTIONS, GENERATOR, MazeConfig, generate, make_maze, render, summarize
from data_gen.textures import FLAT_FLOORS, FLAT_WALLS, flat_bank, texture_bank

SMALL = MazeConfig(resolution=16, episode_length=60)
MID = MazeConfig(resolution=16)  # default episode length (300) at a small resolution


@pytest.fixture(scope="module")
def batch():
    """A few default-length episodes at 16x16: cheap, and long enough for the policy statistics."""
    return generate(episode_seeds(0, range(8)), MID)


def _wrap(a):
    return (np.asarray(a, np.float64) + np.pi) % (2 * np.pi) - np.pi


def _wall_segments(layout):
    """Thin wall segments ((x0, y0), (x1, y1)) of a layout."""
    g = layout.shape[0]
    segs = []
    for a in range(g):
        for b in range(g):
            if not layout[a, b]:
                continue
            if a % 2 == 0 and b % 2 == 1:  # wall at x = a/2 spanning one cell in y
                segs.append(((a // 2, b // 2), (a // 2, b // 2 + 1)))
            elif a % 2 == 1 and b % 2 == 0:  # wall at y = b/2 spanning one cell in x
                segs.append(((a // 2, b // 2), (a // 2 + 1, b // 2)))
    return np.array(segs, np.float64)


def _crosses(p0, p1, segs):
    """Whether segment p0-p1 touches any of the segments (closed, with a tiny tolerance)."""
    a, b = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    c, d = segs[:, 0], segs[:, 1]

    def orient(p, q, r):
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])

    o1, o2 = orient(a, b, c), orient(a, b, d)
    o3, o4 = orient(c, d, a), orient(c, d, b)
    eps = 1e-9
    proper = (o1 * o2 <= eps) & (o3 * o4 <= eps)
    # exclude collinear-but-disjoint cases: require overlapping bounding boxes
    lo = np.minimum(c, d) - 1e-9
    hi = np.maximum(c, d) + 1e-9
    box = (np.maximum(np.minimum(a, b), lo) <= np.minimum(np.maximum(a, b), hi)).all(axis=1)
    return bool((proper & box).any())


def test_crossing_helper():
    segs = np.array([[[1.0, 0.0], [1.0, 1.0]]])
    assert _crosses((0.9, 0.5), (1.1, 0.5), segs) and _crosses((0.9, 1.1), (1.1, 0.9), segs)
    assert not _crosses((0.9, 0.5), (0.95, 0.6), segs) and not _crosses((0.9, 1.1), (1.1, 1.2), segs)


# ----------------------------------------------------------------------------- textures


def test_texture_bank_is_deterministic_varied_and_cached():
    bank = texture_bank(32)
    assert bank.dtype == np.uint8 and bank.ndim == 4 and bank.shape[1:] == (32, 32, 3)
    assert len(bank) >= 48
    assert texture_bank(32) is bank  # cached
    assert not bank.flags.writeable
    flat = bank.reshape(len(bank), -1).astype(np.float32)
    diff = np.abs(flat[:, None] - flat[None]).mean(axis=2)
    np.fill_diagonal(diff, np.inf)
    assert diff.min() > 8.0, "two textures are nearly identical"
    assert (flat.std(axis=1) > 3.0).all(), "a texture is flat"
    assert texture_bank(16).shape[1:] == (16, 16, 3)
    with pytest.raises(ValueError):
        texture_bank(24)


# ----------------------------------------------------------------------------- maze layout


@pytest.mark.parametrize("size,extra", [(2, 0), (5, 0), (7, 4), (7, 100)])
def test_maze_is_connected_perfect_plus_openings(size, extra):
    rng = np.random.default_rng(size * 1000 + extra)
    layout = make_maze(rng, size, extra)
    g = 2 * size + 1
    assert layout.shape == (g, g) and layout.dtype == np.uint8
    assert set(np.unique(layout)) <= {0, 1}
    # border solid, cells open
    assert layout[0].all() and layout[-1].all() and layout[:, 0].all() and layout[:, -1].all()
    assert not layout[1::2, 1::2].any()
    # a perfect maze has size^2 - 1 passages; openings add `extra` more (as far as walls remain)
    interior_walls = 2 * size * (size - 1)
    passages = int((layout[2:-1:2, 1::2] == 0).sum() + (layout[1::2, 2:-1:2] == 0).sum())
    assert passages == min(size * size - 1 + extra, interior_walls)
    # connected: BFS over cells reaches all of them
    nbrs = maze.cell_neighbors(layout)
    seen = {0}
    queue = deque([0])
    while queue:
        c = queue.popleft()
        for n in nbrs[c]:
            if n not in seen:
                seen.add(n)
                queue.append(n)
    assert len(seen) == size * size
    # corner blocks are walls exactly where a wall segment meets the lattice point
    for a in range(0, g, 2):
        for b in range(0, g, 2):
            touching = [layout[a + da, b + db] for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1))
                        if 0 <= a + da < g and 0 <= b + db < g]
            assert layout[a, b] == int(any(touching))


def test_bfs_next_hop_follows_shortest_paths():
    layout = make_maze(np.random.default_rng(3), 6, 3)
    nbrs = maze.cell_neighbors(layout)
    for target in (0, 17, 35):
        hop = maze.bfs_next_hop(nbrs, target)
        dist = maze.bfs_distances(nbrs, target)
        for c in range(36):
            if c == target:
                assert hop[c] == c
            else:
                assert hop[c] in nbrs[c] and dist[hop[c]] == dist[c] - 1


# ----------------------------------------------------------------------------- generate


def test_shapes_and_dtypes():
    out = generate(np.array([1, 2], np.uint32), SMALL)
    assert out["video"].shape == (2, 60, 16, 16, 3) and out["video"].dtype == np.uint8
    assert out["actions"].shape == (2, 60) and out["actions"].dtype == np.int32
    assert out["pose"].shape == (2, 60, 3) and out["pose"].dtype == np.float32
    assert out["layout"].shape == (2, 15, 15) and out["layout"].dtype == np.uint8
    assert out["actions"].min() >= 0 and out["actions"].max() < len(ACTIONS)
    odd = generate(np.array([5], np.uint32), dataclasses.replace(SMALL, resolution=13, size=3, episode_length=7))
    assert odd["video"].shape == (1, 7, 13, 13, 3) and odd["layout"].shape == (1, 7, 7)


def test_deterministic_from_seed_and_independent_of_batch():
    a = generate(np.array([11, 12, 13], np.uint32), SMALL)
    b = generate(np.array([13], np.uint32), SMALL)
    c = generate(np.array([11, 12, 13], np.uint32), SMALL)
    for k in a:
        np.testing.assert_array_equal(a[k], c[k])
        np.testing.assert_array_equal(a[k][2], b[k][0])
    assert not np.array_equal(a["video"][0], a["video"][1])
    assert not np.array_equal(a["pose"][0], a["pose"][1])


def test_agent_stays_in_open_space_and_never_crosses_walls(batch):
    m = MID.margin
    for layout, pose in zip(batch["layout"], batch["pose"]):
        segs = _wall_segments(layout)
        xy = pose[:, :2].astype(np.float64)
        assert (xy >= m - 1e-5).all() and (xy <= MID.size - m + 1e-5).all()
        # keeps its margin to every wall segment (L-infinity distance to the segment)
        lo = segs.min(axis=1)[None] - m + 1e-4
        hi = segs.max(axis=1)[None] + m - 1e-4
        inside = ((xy[:, None] > lo) & (xy[:, None] < hi)).all(axis=2)
        assert not inside.any(), "agent closer than its margin to a wall"
        for t in range(1, len(xy)):
            if not np.array_equal(xy[t], xy[t - 1]):
                assert not _crosses(xy[t - 1], xy[t], segs), f"step {t} crosses a wall"


def test_all_actions_occur(batch):
    counts = np.bincount(batch["actions"].ravel(), minlength=len(ACTIONS))
    assert (counts > 0).all(), dict(zip(ACTIONS, counts))
    assert counts[maze.FORWARD] == counts.max()


def test_actions_match_pose_changes(batch):
    cfg = MID
    turn = math.radians(cfg.turn_degrees)
    tol = 2e-4
    blocked = 0
    for act, pose in zip(batch["actions"], batch["pose"]):
        p = pose.astype(np.float64)
        for t in range(1, len(p)):
            a = act[t]
            (x0, y0, h0), (x1, y1, h1) = p[t - 1], p[t]
            dh = _wrap(h1 - h0)
            if a in (maze.TURN_LEFT, maze.TURN_RIGHT):
                assert abs(dh - (turn if a == maze.TURN_LEFT else -turn)) < tol
                assert x1 == x0 and y1 == y0
                continue
            assert abs(dh) < tol
            c, s = math.cos(h0), math.sin(h0)
            step = {maze.FORWARD: (cfg.move_step * c, cfg.move_step * s),
                    maze.BACKWARD: (-cfg.side_step * c, -cfg.side_step * s),
                    maze.STRAFE_LEFT: (-cfg.side_step * s, cfg.side_step * c),
                    maze.STRAFE_RIGHT: (cfg.side_step * s, -cfg.side_step * c)}[a]
            # each axis either moves by the full step or, when blocked by a wall, not at all
            for got, want in ((x1 - x0, step[0]), (y1 - y0, step[1])):
                assert abs(got - want) < tol or abs(got) == 0.0, (t, ACTIONS[a], got, want)
                blocked += abs(got) == 0.0 and abs(want) > tol
    assert blocked < 0.2 * batch["actions"].size


def test_render_changes_with_heading_and_looks_like_a_room():
    layout = make_maze(np.random.default_rng(0), 4, 0)
    cfg = MazeConfig(resolution=32, size=4)
    poses = np.array([[1.5, 1.5, 0.0], [1.5, 1.5, 0.3], [1.5, 1.5, 0.0]], np.float32)
    frames = render(layout, poses, cfg)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0], frames[2])
    # the top row shows ceiling or wall, the bottom row floor or wall; the image is not flat
    assert frames[0].std() > 5


def test_render_wall_distance_matches_geometry():
    # a corridor along x: looking +x from (0.5, 0.5) in a 3x1-open row, the centre column hits x = 3
    size = 3
    layout = np.ones((7, 7), np.uint8)
    layout[1::2, 1::2] = 0
    layout[1:6, 1] = 0  # cells (0,0), (1,0), (2,0) joined along x
    layout[1, 2:6] = 0  # and (0,0)-(0,1)-(0,2) along y, so the maze is connected
    layout[2::2, 2::2] = 1
    cfg = MazeConfig(resolution=16, size=size)
    dist, *_ = maze.cast_rays(layout, np.array([[0.5, 0.5, 0.0], [0.5, 0.5, math.pi / 2]]), cfg)
    assert abs(dist[0, 7] - 2.5) < 1e-6 and abs(dist[0, 8] - 2.5) < 1e-6
    assert abs(dist[1, 7] - 2.5) < 1e-6


def test_revisit_fraction(batch):
    rf = summarize(batch)["revisit_fraction"]
    assert rf.shape == (8,)
    assert rf.mean() >= 0.25, rf
    # hand-made poses: second half retraces the first half exactly -> 1; reversed heading -> 0
    t = np.arange(200)
    pose = np.zeros((2, 200, 3), np.float32)
    pose[:, :, 0] = 0.5 + (t % 144) * 0.02
    pose[:, :, 1] = 0.5
    pose[1, 144:, 2] = np.pi
    np.testing.assert_allclose(maze.revisit_fraction(pose), [1.0, 0.0])
    assert np.isnan(maze.revisit_fraction(pose[:, :144])).all()


def test_config_validation():
    for bad in (dict(resolution=4), dict(size=1), dict(move_step=0.5), dict(texture_size=24),
                dict(explore_prob=1.5), dict(episode_length=0)):
        with pytest.raises(ValueError):
            MazeConfig(**bad).validate()
    MazeConfig().validate()


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_dataset(tmp_path, capsys):
    out = tmp_path / "maze"
    means = maze.main(["--episodes", "3", "--out", str(out), "--seed", "4", "--chunk", "2",
                       "--resolution", "16", "--episode_length", "150", "--size", "5",
                       "--test_fraction", "0.34", "--preview", str(tmp_path / "sheet.png")])
    train, test = sorted((out / "train").glob("*.npz")), sorted((out / "test").glob("*.npz"))
    assert [p.name for p in train] == ["ep_000000.npz", "ep_000001.npz"]
    assert [p.name for p in test] == ["ep_000002.npz"]
    with np.load(test[0]) as z:
        assert set(z.files) == {"video", "actions", "pose", "layout"}
        assert z["video"].shape == (150, 16, 16, 3) and z["layout"].shape == (11, 11)
        # the file holds exactly what generate makes for that episode's seed
        cfg = MazeConfig(resolution=16, episode_length=150, size=5)
        ref = generate(episode_seeds(4, [2]), cfg)
        np.testing.assert_array_equal(z["video"], ref["video"][0])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] == "maze" and meta["action_names"] == list(ACTIONS)
    assert meta["config"]["size"] == 5 and "revisit_fraction" in meta["stats_of_this_run"]
    assert "revisit_fraction" in means and (tmp_path / "sheet.png").exists()
    assert "revisit_fraction" in capsys.readouterr().out
    from teco_jax.data import tfds_write  # the build keeps the action set meta.json names

    built = tfds_write.build_from_episodes(out, tmp_path / "tfds")
    assert (built.num_actions, built.action_names, built.num_actions_inferred) == (len(ACTIONS), ACTIONS, False)


def test_cli_rejects_bad_flags(tmp_path, capsys):
    for flags in (["--resolution", "4"], ["--size", "1"], ["--texture_size", "20"]):
        with pytest.raises(SystemExit) as e:
            maze.main(["--episodes", "1", "--out", str(tmp_path / "x"), *flags])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "resolution must be >= 8" in err and "size must be >= 2" in err


def test_generator_object():
    assert GENERATOR.name == "maze" and GENERATOR.action_names == ACTIONS
    assert ACTIONS == ("forward", "backward", "strafe_left", "strafe_right", "turn_left", "turn_right")
    assert GENERATOR.summarize is summarize and GENERATOR.generate is generate


# ----------------------------------------------------------------------------- the cpu preset


def test_cpu_preset_cli_sets_its_world_and_flags_override_it(tmp_path):
    out = tmp_path / "cpu"
    maze.main(["--preset", "cpu", "--episodes", "1", "--out", str(out), "--test_fraction", "0",
               "--episode_length", "20"])
    meta = json.loads((out / "meta.json").read_text())
    want = dataclasses.replace(maze.PRESETS["cpu"], episode_length=20)
    assert meta["config"] == dataclasses.asdict(want)
    with np.load(out / "train" / "ep_000000.npz") as z:
        assert z["video"].shape == (20, 32, 32, 3)
        np.testing.assert_array_equal(z["video"], generate(episode_seeds(0, [0]), want)["video"][0])


def test_flat_family_frames_are_few_flat_colours():
    """The cpu world's frames are made of flat regions: far fewer distinct colours than the
    patterned DMLab-style world at the same size, and every wall colour comes from the episode's
    few flat panels (seams and distance shading aside)."""
    cpu = dataclasses.replace(maze.PRESETS["cpu"], episode_length=12)
    mixed = dataclasses.replace(cpu, texture_family="mixed", texture_size=32, shade_levels=32)
    seeds = episode_seeds(3, [0, 1])
    flat_video, mixed_video = generate(seeds, cpu)["video"], generate(seeds, mixed)["video"]

    def colours(v):
        return np.mean([len(np.unique(f.reshape(-1, 3), axis=0)) for f in v.reshape((-1,) + v.shape[2:])])

    assert colours(flat_video) * 3 < colours(mixed_video)
    bank = flat_bank(8)
    assert bank.shape == (FLAT_WALLS + FLAT_FLOORS, 8, 8, 3) and not bank.flags.writeable
    # a wall panel is one colour inside its seams, and its seams are darker
    panel = bank[0].astype(int)
    assert (panel[:, 1:-1] == panel[0, 1]).all() and (panel[:, 0].sum(-1) < panel[0, 1].sum() // 2).all()


def test_flat_family_validation():
    with pytest.raises(ValueError, match="texture_family"):
        MazeConfig(texture_family="plaid").validate()
    with pytest.raises(ValueError, match="wall colours"):
        MazeConfig(texture_family="flat", wall_textures=FLAT_WALLS + 1).validate()


def test_cell_moves_walk_cell_to_cell_turn_90_degrees_and_repeat_views_exactly():
    cfg = MazeConfig(size=5, resolution=16, episode_length=200, cell_moves=True, target_radius=4)
    out = generate(episode_seeds(0, range(4)), cfg)
    moved = blocked = 0
    for layout, pose, act, video in zip(out["layout"], out["pose"], out["actions"], out["video"]):
        p = pose.astype(np.float64)
        np.testing.assert_allclose(p[:, :2] % 1.0, 0.5, atol=1e-6)  # always on a cell centre
        quarter = p[:, 2] / (np.pi / 2)
        np.testing.assert_allclose(quarter, np.round(quarter), atol=1e-5)  # facing an axis direction
        segs = _wall_segments(layout)
        for t in range(1, len(p)):
            a, d = act[t], p[t, :2] - p[t - 1, :2]
            dh = _wrap(p[t, 2] - p[t - 1, 2])
            if a in (maze.TURN_LEFT, maze.TURN_RIGHT):
                assert abs(dh - (np.pi / 2 if a == maze.TURN_LEFT else -np.pi / 2)) < 1e-5 and not d.any()
                continue
            assert abs(dh) < 1e-6
            c, s = round(math.cos(p[t - 1, 2])), round(math.sin(p[t - 1, 2]))
            want = {maze.FORWARD: (c, s), maze.BACKWARD: (-c, -s),
                    maze.STRAFE_LEFT: (-s, c), maze.STRAFE_RIGHT: (s, -c)}[a]
            if d.any():  # one whole cell in the action's direction, never through a wall
                np.testing.assert_allclose(d, want, atol=1e-6)
                assert not _crosses(p[t - 1, :2], p[t, :2], segs)
                moved += 1
            else:  # only a wall between the two cells stops it
                assert _crosses(p[t - 1, :2], p[t - 1, :2] + want, segs)
                blocked += 1
        # the same pose renders the same frame, and poses recur
        key = [tuple(np.round(q, 3)) for q in p]
        first = {}
        for t, k in enumerate(key):
            if k in first:
                np.testing.assert_array_equal(video[t], video[first[k]])
            first.setdefault(k, t)
        assert len(first) < 0.5 * len(key)
    assert moved > 100 and blocked < moved
