import math

import jax.numpy as jnp
import numpy as np
import pytest

from data_gen import maze
from teco_jax import pose_memory
from teco_jax.errors import UserError
from teco_jax.revisit import wrap_angle

F, B, SL, SR, TL, TR = range(6)  # the maze's actions (data_gen.maze.ACTIONS)
GRID = pose_memory.Motion.parse("turn=0,0,0,0,90,-90;forward=1,-1,0,0,0,0;left=0,0,1,-1,0,0", 6)
SMOOTH = pose_memory.Motion.parse("turn=0,0,0,0,15,-15;forward=0.15,-0.1,0,0,0,0;left=0,0,0.1,-0.1,0,0", 6)
EXACT = pose_memory.Retrieval(neighbours=1, turn_cost=0.5, radius=1e-3)


def retrieve(actions, frames, motion=GRID, retrieval=EXACT, detect_blocked=True, at=None):
    a = jnp.asarray([actions], jnp.int32)
    moved = pose_memory.moved(jnp.asarray([frames])) if detect_blocked else jnp.ones(a.shape, bool)
    pose, query = pose_memory.dead_reckon(a, moved, motion)
    idx, feats = pose_memory.nearest(pose, query, retrieval, at)
    return np.asarray(idx)[0], np.asarray(feats)[0]


def found_index(idx, feats):
    """The first neighbour's index where found, else -1, per frame."""
    return np.where(feats[:, 0, 3] > 0, idx[:, 0], -1).tolist()


def test_exact_revisits_in_a_grid_world_are_found_at_distance_zero():
    # 0: start; 1-4: four left turns (back to 0's pose); 5: forward; 6: back (0's pose again);
    # 7: strafe left into a wall (the frame does not change: the pose stays); 8: turn right
    actions = [F, TL, TL, TL, TL, F, B, SL, TR]
    frames = [0, 1, 2, 3, 0, 5, 0, 0, 8]
    idx, feats = retrieve(actions, frames)
    assert found_index(idx, feats) == [-1, -1, -1, -1, 0, -1, 4, -1, 3]
    # the query for frame t assumes its own step moves: frame 7 is looked for one cell to the left
    # (nothing there), but frame 8 is from the pose frame 7 really had (unchanged: blocked)
    np.testing.assert_allclose(feats[8, 0], [0, 0, 0, 1], atol=1e-5)


def test_a_near_view_is_found_with_its_pose_relative_to_the_query():
    # three 15-degree left turns, one forward step, then back: the query of frame 5 is frame 3's
    # pose; frame 6 turns right, 15 degrees from frame 5 (= frame 3's pose), frame 2 matches it exactly
    actions = [F, TL, TL, TL, F, B, TR]
    frames = list(range(7))
    there_and_back = pose_memory.Motion.parse("turn=0,0,0,0,15,-15;forward=0.15,-0.15,0,0,0,0;left=0,0,0,0,0,0", 6)
    idx, feats = retrieve(actions, frames, there_and_back, pose_memory.Retrieval(2, 0.5, 0.5), detect_blocked=False)
    assert idx[5, 0] == 3 and idx[6, 0] == 2
    np.testing.assert_allclose(feats[5, 0], [0, 0, 0, 1], atol=1e-5)
    # frame 6's second neighbour is frame 5 (or 3: same pose, the latest wins): 15 degrees to its left
    assert idx[6, 1] == 5
    np.testing.assert_allclose(feats[6, 1], [0, 0, math.radians(15), 1], atol=1e-5)
    # frame 4 (one step forward from frame 3): frame 3 is 0.15 cells behind, facing the same way
    assert idx[4, 0] == 3
    np.testing.assert_allclose(feats[4, 0], [-0.15, 0, 0, 1], atol=1e-5)


def test_nothing_near_enough_is_not_found():
    actions = [F] + [F] * 9  # a straight walk: every earlier frame is behind by a multiple of 0.15
    idx, feats = retrieve(actions, list(range(10)), SMOOTH, pose_memory.Retrieval(1, 0.5, 0.1), False)
    assert feats[0, 0, 3] == 0  # frame 0 has no earlier frame
    assert (feats[1:, 0, 3] == 0).all()  # the nearest is 0.15 cells away, beyond radius 0.1
    assert (feats[1:, 0] == 0).all()  # features of frames not found are zero


def test_retrieval_reads_earlier_frames_and_actions_up_to_t_only():
    rng = np.random.default_rng(0)
    actions, frames = rng.integers(0, 6, 40), rng.integers(0, 3, 40)
    ret = pose_memory.Retrieval(2, 0.5, 1.0)
    ref_idx, ref_feats = retrieve(actions, frames, SMOOTH, ret)
    for t in range(1, 40):
        a2, f2 = actions.copy(), frames.copy()
        a2[t + 1:], f2[t:] = (a2[t + 1:] + 1) % 6, f2[t:] + 5
        idx, feats = retrieve(a2, f2, SMOOTH, ret)
        np.testing.assert_array_equal(idx[:t + 1], ref_idx[:t + 1])
        np.testing.assert_allclose(feats[:t + 1], ref_feats[:t + 1], atol=1e-6)
        assert (idx[t][feats[t, :, 3] > 0] < t).all()  # what is found is earlier


def test_one_frame_at_a_time_equals_the_whole_clip():
    rng = np.random.default_rng(1)
    actions, frames = rng.integers(0, 6, 20), rng.integers(0, 4, 20)
    ret = pose_memory.Retrieval(3, 0.5, 1.0)
    idx, feats = retrieve(actions, frames, SMOOTH, ret)
    for t in (0, 5, 19):
        i, f = retrieve(actions, frames, SMOOTH, ret, at=jnp.asarray(t))
        np.testing.assert_array_equal(i[0], idx[t])
        np.testing.assert_allclose(f[0], feats[t], atol=1e-6)


@pytest.mark.parametrize("preset, expected", [
    ("smooth", dict(turn=(0, 0, 0, 0, 15, -15), forward=(0.15, -0.1, 0, 0, 0, 0), left=(0, 0, 0.1, -0.1, 0, 0))),
    ("cpu", dict(turn=(0, 0, 0, 0, 90, -90), forward=(1, -1, 0, 0, 0, 0), left=(0, 0, 1, -1, 0, 0)))])
def test_fit_recovers_each_actions_motion_from_maze_poses(preset, expected):
    eps = maze.generate(np.arange(6) + 10**6, maze.PRESETS[preset])
    motion, rate = pose_memory.Motion.fit(eps["actions"], eps["pose"], 6)
    for key, want in expected.items():
        np.testing.assert_allclose(getattr(motion, key), want, atol=1e-3, err_msg=key)
    assert pose_memory.Motion.parse(str(motion), 6) == motion  # the text form round-trips
    assert rate[TL] == 1.0  # turns are never blocked


def test_dead_reckoning_from_fitted_motion_tracks_the_true_smooth_poses():
    eps = maze.generate(np.arange(4) + 2 * 10**6, maze.PRESETS["smooth"])
    motion, _ = pose_memory.Motion.fit(eps["actions"], eps["pose"], 6)
    moved = pose_memory.moved(jnp.asarray(eps["video"]))
    pose, _ = pose_memory.dead_reckon(jnp.asarray(eps["actions"]), moved, motion)
    truth = eps["pose"].astype(np.float64)
    # the truth in frame 0's camera frame
    c, s = np.cos(truth[:, :1, 2]), np.sin(truth[:, :1, 2])
    dx, dy = truth[..., 0] - truth[:, :1, 0], truth[..., 1] - truth[:, :1, 1]
    rel = np.stack([c * dx + s * dy, -s * dx + c * dy], -1)
    err = np.linalg.norm(np.asarray(pose)[..., :2] - rel, axis=-1)
    assert err.max() < 0.05, err.max()


@pytest.mark.parametrize("text, problem", [("turn=0,1;forward=1,0;left=0,0", "for 6 actions"),
                                           ("nonsense", "expected"),
                                           ("turn=0,0,0,0,1,nan;forward=1,2,3,4,0,0;left=0,0,0,0,0,0", "finite")])
def test_bad_motion_tables_are_named(text, problem):
    with pytest.raises(UserError, match=problem):
        pose_memory.Motion.parse(text, 6)


def test_fit_without_poses_is_refused():
    with pytest.raises(UserError, match="pose arrays"):
        pose_memory.Motion.fit(np.zeros((2, 5), np.int32), np.zeros((2, 5, 2)), 6)


def test_min_age_leaves_the_latest_frames_out():
    actions = [F, TL, TR, TL, TR, TL]  # frames 0, 2, 4 and 1, 3, 5 share their poses
    frames = list(range(6))
    idx, feats = retrieve(actions, frames, GRID, pose_memory.Retrieval(1, 0.5, 1e-3, min_age=3))
    assert found_index(idx, feats) == [-1, -1, -1, -1, 0, 1]  # frame 4 may not read 2, frame 5 not 3


def test_latest_slot_reads_the_previous_frame_with_its_relative_pose():
    actions = [F, F, TL, F]
    idx, feats = retrieve(actions, list(range(4)), SMOOTH, pose_memory.Retrieval(1, 0.5, 1.0, min_age=3,
                                                                                latest=True))
    assert idx[:, 0].tolist()[1:] == [0, 1, 2] and feats[0, 0, 3] == 0  # frame 0 has no previous frame
    np.testing.assert_allclose(feats[2, 0], [0, 0, -math.radians(15), 1], atol=1e-5)  # t-1 is 15 deg to the right
    np.testing.assert_allclose(feats[3, 0], [-0.15, 0, 0, 1], atol=1e-5)
    assert found_index(idx[:, 1:], feats[:, 1:]) == [-1, -1, -1, 0]  # the old-frame slot: frames <= t - 3


def test_rotating_the_previous_view_by_its_turn_predicts_the_rendered_view():
    eps = maze.generate(np.arange(4) + 3 * 10**6, maze.PRESETS["smooth"])
    video, actions, pose = eps["video"].astype(np.float32) / 255, eps["actions"], eps["pose"]
    b, t = np.nonzero(np.isin(actions[:, 1:], (TL, TR)))
    t = t + 1
    turn = wrap_angle(pose[b, t - 1, 2] - pose[b, t, 2])  # the earlier view's heading minus the query's
    turned, seen = pose_memory.rotate_view(jnp.asarray(video[b, t - 1]), jnp.asarray(turn), math.radians(70))
    seen = np.asarray(seen) > 0.99

    def err(x):
        return float(np.mean(((np.asarray(x) - video[b, t]) ** 2)[np.broadcast_to(seen, x.shape)]))

    assert err(turned) < 0.4 * err(video[b, t - 1])  # on what the earlier view saw
    assert 0.6 < seen.mean() < 0.95  # a 15-degree turn of a 70-degree view loses about a fifth
    _, none = pose_memory.rotate_view(jnp.asarray(video[:1, 0]), jnp.asarray([math.pi / 2]), math.radians(70))
    assert float(np.asarray(none).max()) == 0  # turned past the field of view: nothing seen
