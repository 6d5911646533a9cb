"""Tests of the Minecraft-style voxel world generator (small frames, short episodes)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from data_gen import voxel
from data_gen import voxel_render
from data_gen import voxel_world as vw
from data_gen.voxel import (ACTIONS, FORWARD, FORWARD_JUMP, JUMP, NOOP, TURN_LEFT, TURN_RIGHT, AgentState,
                            VoxelConfig, generate, render_frames, simulate, step_agent, summarize)
from teco_jax.revisit import memory_mask, revisit_mask, wrap_angle

SMALL = VoxelConfig(resolution=16, episode_length=24)


def flat_world(size: int = 24, height: int = 28, ground: int = 12, sea_level: int = 4) -> vw.World:
    """Stone up to `ground` (no water unless carved below sea_level), one cloud-free sky."""
    blocks = np.zeros((size, size, height), np.uint8)
    blocks[:, :, :ground] = vw.STONE
    return _world(blocks, sea_level)


def _world(blocks: np.ndarray, sea_level: int) -> vw.World:
    solid = vw.SOLID[blocks]
    terrain = np.where(solid.any(axis=2), blocks.shape[2] - np.argmax(solid[:, :, ::-1], axis=2), 0)
    return vw.World(blocks=blocks, colmax=vw.column_max(blocks), terrain=terrain.astype(np.int16),
                    sea_level=sea_level, clouds=np.zeros((8, 8), bool), sun=np.array([0.0, -1.0, 0.0]))


@pytest.fixture(scope="module")
def batch():
    return generate(np.array([3, 11], np.uint32), SMALL)


# ------------------------------------------------------------------ generate: shapes, determinism

def test_shapes_and_dtypes(batch):
    t, r = SMALL.episode_length, SMALL.resolution
    n = SMALL.world_size
    assert batch["video"].shape == (2, t, r, r, 3) and batch["video"].dtype == np.uint8
    assert batch["actions"].shape == (2, t) and batch["actions"].dtype == np.int32
    assert batch["pose"].shape == (2, t, 3) and batch["pose"].dtype == np.float32
    assert batch["elevation"].shape == (2, t) and batch["elevation"].dtype == np.float32
    assert batch["heightmap"].shape == (2, n, n) and batch["heightmap"].dtype == np.int16
    assert batch["actions"].min() >= 0 and batch["actions"].max() < len(ACTIONS)
    assert batch["video"].std() > 10  # not a blank picture


def test_determinism_and_batch_independence(batch):
    again = generate(np.array([11], np.uint32), SMALL)
    for k in batch:
        np.testing.assert_array_equal(batch[k][1], again[k][0], err_msg=k)
    assert not np.array_equal(batch["video"][0], batch["video"][1])
    assert not np.array_equal(batch["heightmap"][0], batch["heightmap"][1])


def test_world_is_deterministic_and_consistent():
    a = vw.generate_world(np.random.default_rng(7))
    b = vw.generate_world(np.random.default_rng(7))
    np.testing.assert_array_equal(a.blocks, b.blocks)
    # colmax is one above the highest non-air cell
    x, y = 5, 9
    nonair = np.nonzero(a.blocks[x, y])[0]
    assert a.colmax[x, y] == nonair.max() + 1
    kinds = set(np.unique(a.blocks).tolist())
    assert {vw.GRASS, vw.DIRT, vw.STONE, vw.WATER, vw.LOG, vw.LEAVES} <= kinds
    # water only below the sea level, over the terrain
    wx, wy, wz = np.nonzero(a.blocks == vw.WATER)
    assert wz.max() < a.sea_level
    assert np.all(wz >= a.terrain[wx, wy])


# ------------------------------------------------------------------ agent

def _states(seed: int, cfg: VoxelConfig):
    ws, ks = np.random.SeedSequence(seed).spawn(2)
    world = voxel.make_world(np.random.default_rng(ws), cfg)
    actions, states = simulate(world, np.random.default_rng(ks), cfg)
    return world, actions, states


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agent_stays_inside_and_never_in_a_block(seed):
    cfg = dataclasses.replace(SMALL, episode_length=300)
    world, actions, states = _states(seed, cfg)
    lo, hi = cfg.margin + cfg.body_radius, cfg.world_size - cfg.margin - cfg.body_radius
    for s in states:
        assert lo - 1e-9 <= s.x <= hi + 1e-9 and lo - 1e-9 <= s.y <= hi + 1e-9
        assert -math.pi <= s.yaw < math.pi
        cx, cy, cz = int(s.x), int(s.y), int(math.floor(s.z + 1e-6))
        assert not vw.SOLID[world.blocks[cx, cy, cz]], "feet inside a solid block"
        assert voxel.body_clear(world, s.x, s.y, s.z, cfg.body_radius)
        if s.on_ground:
            assert s.z == int(s.z)
            assert voxel.support(world, s.x, s.y, s.z, cfg.body_radius) == s.z
            under = [vw.SOLID[world.blocks[fx, fy, int(s.z) - 1]]
                     for fx, fy in voxel.footprint(s.x, s.y, cfg.body_radius, world.size)]
            assert any(under), "standing on nothing"
        # never deeper in water than allowed
        assert s.z >= world.sea_level - cfg.max_water_depth - 1e-9
    assert len(set(actions.tolist())) >= 3  # walks, turns and more


@pytest.mark.parametrize("seed", [0, 5])
def test_actions_consistent_with_pose(seed):
    cfg = dataclasses.replace(SMALL, episode_length=300)
    _, actions, states = _states(seed, cfg)
    turn = math.radians(cfg.turn_deg)
    moved = 0
    for t in range(1, len(states)):
        a, p, q = actions[t], states[t - 1], states[t]
        dyaw = wrap_angle(q.yaw - p.yaw)
        dx, dy = q.x - p.x, q.y - p.y
        if a == TURN_LEFT:
            assert dyaw == pytest.approx(turn) and (dx, dy) == (0, 0)
        elif a == TURN_RIGHT:
            assert dyaw == pytest.approx(-turn) and (dx, dy) == (0, 0)
        elif a in (NOOP, JUMP):
            assert (dx, dy, dyaw) == (0, 0, 0)
        else:
            assert dyaw == 0
            if (dx, dy) != (0, 0):  # moved along the heading by walk_speed, or blocked
                moved += 1
                assert dx == pytest.approx(cfg.walk_speed * math.cos(p.yaw))
                assert dy == pytest.approx(cfg.walk_speed * math.sin(p.yaw))
        if a == NOOP and p.on_ground and q.on_ground:
            assert q.z == p.z
    assert moved > 20


def _run(world, state, actions, cfg):
    states = []
    for a in actions:
        state, _ = step_agent(world, state, a, cfg)
        states.append(state)
    return states


def test_steps_walls_jumps_and_water():
    cfg = VoxelConfig(resolution=16, episode_length=10)
    world = flat_world()
    blocks = world.blocks.copy()
    blocks[10:, :, 12] = vw.STONE       # a 1-block step up at x = 10
    blocks[14:, :, 13:15] = vw.STONE    # then a 2-block step up at x = 14
    world = _world(blocks, sea_level=4)
    start = AgentState(x=8.5, y=5.5, z=12.0, yaw=0.0)

    walked = _run(world, start, [FORWARD] * 40, cfg)
    assert walked[-1].z == 13.0 and 13.0 - cfg.body_radius - 0.25 < walked[-1].x < 14.0 - cfg.body_radius
    assert all(s.y == 5.5 for s in walked)

    # a jump on flat ground goes up about jump_height and comes back down
    jumped = _run(world, start, [JUMP] + [NOOP] * 30, cfg)
    zs = [s.z for s in jumped]
    assert max(zs) == pytest.approx(12.0 + cfg.jump_height, abs=0.1)
    assert jumped[-1].z == 12.0 and jumped[-1].on_ground

    # jumping while walking gets over the 2-block wall
    hop = _run(world, walked[-1], [FORWARD_JUMP] * 12 + [FORWARD] * 30, cfg)
    assert hop[-1].x > 15.0 and hop[-1].z == 15.0

    # deep water cannot be entered, shallow water can
    blocks = flat_world().blocks.copy()
    sea = 12
    blocks[10:, :, 10:12] = vw.WATER    # 2 deep from x = 10
    blocks[8:10, :, 11] = vw.WATER      # 1 deep at x = 8, 9
    world = _world(blocks, sea_level=sea)
    walked = _run(world, AgentState(x=6.5, y=5.5, z=12.0, yaw=0.0), [FORWARD] * 40, cfg)
    assert 9.0 < walked[-1].x < 10.0 and walked[-1].z == 11.0


def test_summary_revisit_and_memory_fractions():
    pose = np.zeros((1, 200, 3), np.float32)
    pose[0, :, 0] = np.arange(200) + 0.5   # walks away, never back
    stats = lambda: summarize({"pose": pose, "sky_fraction": np.zeros((1, 200)), "water_fraction": np.zeros((1, 200))})
    assert stats()["revisit_fraction"][0] == 0.0 and stats()["memory_fraction"][0] == 0.0
    pose[0, 150:, :2] = pose[0, :50, :2]   # 50 frames back on columns seen long before the split
    assert stats()["revisit_fraction"][0] == pytest.approx(50 / 56)
    assert stats()["memory_fraction"][0] == pytest.approx(50 / 56)
    pose[0, 150:, 2] = math.pi             # ... but facing the other way
    assert stats()["revisit_fraction"][0] == 0.0


@pytest.mark.parametrize("preset,split", [("128", 144), ("cpu", 64)])
def test_return_policy_comes_back(preset, split):
    """The default walk returns to early places facing the same way: the benchmark's revisit
    and memory frames exist (a random walk has few: about 0.05)."""
    cfg = voxel.PRESETS[preset]
    rev, mem, used = [], [], set()
    for seed in range(6):
        _, actions, states = _states(seed, cfg)
        used |= set(actions.tolist())
        pose = np.array([[s.x, s.y, s.yaw] for s in states])
        rev.append(revisit_mask(pose, split).mean())
        mem.append(memory_mask(pose, split, 16).mean())
    assert np.mean(rev) > 0.35 and np.mean(mem) > 0.2, (rev, mem)
    if preset == "128":  # long explorations use every action
        assert used == set(range(len(ACTIONS)))
    random_walk = dataclasses.replace(cfg, policy="random")
    rev_random = [revisit_mask(np.array([[s.x, s.y, s.yaw] for s in _states(seed, random_walk)[2]]), split).mean()
                  for seed in range(6)]
    assert np.mean(rev_random) < np.mean(rev) / 2


@pytest.mark.parametrize("seed", [0, 3])
def test_return_policy_replays_its_exploration(seed):
    """After exploring, the walk goes back: while replaying, every action is the one taken from
    the recorded frame it stands at, within `tolerance` of where it stood then, facing the same way."""
    from data_gen.voxel_policy import ReturnPolicy
    cfg = dataclasses.replace(voxel.PRESETS["cpu"], episode_length=200)
    ws, ks = np.random.SeedSequence(seed).spawn(2)
    world = voxel.make_world(np.random.default_rng(ws), cfg)
    rng = np.random.default_rng(ks)
    state = voxel.spawn(world, rng, cfg)
    policy = ReturnPolicy(rng, cfg.turn_deg, explore=cfg.explore_frames)
    blocked, replayed = False, 0
    for t in range(cfg.episode_length):
        cursor = policy.cursor
        action = policy.act((state.x, state.y, state.yaw), blocked)
        if t >= cfg.explore_frames and policy.mode == "replay" and policy.cursor == cursor + 1:
            x, y, yaw = policy.poses[cursor]
            assert cursor < cfg.explore_frames and action == policy.actions[cursor]
            assert math.hypot(state.x - x, state.y - y) <= policy.tolerance + 1e-9
            assert abs(wrap_angle(state.yaw - yaw)) < 1e-6
            replayed += 1
        state, blocked = step_agent(world, state, action, cfg)
    assert replayed >= 20


def test_bad_policy_is_named():
    with pytest.raises(ValueError, match="policy"):
        dataclasses.replace(SMALL, policy="teleport").validate()


# ------------------------------------------------------------------ rendering

def test_looking_up_sees_only_sky():
    world = flat_world()
    frames, counts = render_frames(world, [[5.5, 5.5, 13.62]], [0.3], math.radians(89.0), SMALL)
    img = frames[0].astype(int)
    assert counts[0, 0] == SMALL.resolution ** 2 and counts[0, 1] == 0
    assert np.all(img[..., 2] > img[..., 0]) and np.all(img[..., 2] > 180)  # blue sky


def test_wall_in_front_shows_its_texture():
    cfg = dataclasses.replace(SMALL, resolution=32)
    world = flat_world()
    blocks = world.blocks.copy()
    blocks[8, :, 12:20] = vw.LOG        # a wall of logs at x = 8, facing -x
    world = _world(blocks, sea_level=4)
    frames, counts = render_frames(world, [[6.5, 5.5, 13.62]], [0.0], 0.0, cfg)
    assert counts[0, 0] == 0  # no sky
    img = frames[0].reshape(-1, 3).astype(np.float64) / 255
    # every pixel is a log-side texel (any mip level) shaded by the x-face light
    texels = vw.block_textures()[vw.LOG, vw.FACE_SIDE, :, :, :, :3].reshape(-1, 3) * 0.80
    dist = np.abs(img[:, None, :] - texels[None, :, :]).max(-1).min(-1)
    assert dist.max() < 3 / 255
    # and a good part of the texture shows up (not a single flat color)
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) >= 8


def test_looking_down_at_water_counts_water():
    blocks = flat_world().blocks.copy()
    blocks[:, :, 8:12] = vw.WATER
    world = _world(blocks, sea_level=12)
    frames, counts = render_frames(world, [[5.5, 5.5, 13.62]], [0.0], math.radians(-80.0), SMALL)
    assert counts[0, 1] == SMALL.resolution ** 2


def test_tile_skipping_changes_nothing(monkeypatch):
    cfg = dataclasses.replace(SMALL, resolution=24)
    world, _, states = _states(4, dataclasses.replace(cfg, episode_length=40))
    eye = [[s.x, s.y, s.z + cfg.eye_height] for s in states[::4]]
    yaw = [s.yaw for s in states[::4]]
    fast, fast_counts = render_frames(world, eye, yaw, math.radians(cfg.pitch_deg), cfg)
    monkeypatch.setattr(voxel_render, "tile_max", lambda colmax: np.full(
        (colmax.shape[0] // voxel_render._TILE, colmax.shape[1] // voxel_render._TILE), 10 ** 6, np.int32))
    slow, slow_counts = render_frames(world, eye, yaw, math.radians(cfg.pitch_deg), cfg)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast_counts, slow_counts)


# ------------------------------------------------------------------ CLI

def test_cli_end_to_end(tmp_path):
    out = tmp_path / "voxel"
    preview = tmp_path / "sheet.png"
    means = voxel.main(["--episodes", "3", "--out", str(out), "--seed", "1", "--test_fraction", "0.34",
                        "--chunk", "2", "--resolution", "16", "--episode_length", "12",
                        "--preview", str(preview)])
    train = sorted((out / "train").glob("*.npz"))
    test = sorted((out / "test").glob("*.npz"))
    assert [p.name for p in train] == ["ep_000000.npz", "ep_000001.npz"]
    assert [p.name for p in test] == ["ep_000002.npz"]
    with np.load(test[0]) as z:
        assert {"video", "actions", "pose", "elevation", "heightmap"} <= set(z.files)
        assert z["video"].shape == (12, 16, 16, 3) and z["actions"].shape == (12,)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] == "voxel" and meta["action_names"] == list(ACTIONS)
    assert meta["config"]["resolution"] == 16
    assert "frames_with_sky" in means and preview.exists()


def test_cli_rejects_bad_settings(tmp_path):
    with pytest.raises(SystemExit, match="resolution"):
        voxel.main(["--episodes", "1", "--out", str(tmp_path), "--resolution", "2"])
    with pytest.raises(SystemExit, match="sea_level"):
        voxel.main(["--episodes", "1", "--out", str(tmp_path), "--sea_level", "30"])
    with pytest.raises(SystemExit):  # argparse: unknown preset
        voxel.main(["--episodes", "1", "--out", str(tmp_path), "--preset", "32"])
