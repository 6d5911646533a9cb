import jax.numpy as jnp
import numpy as np
import pytest

from data_gen import maze
from teco_jax import odometry
from teco_jax.errors import UserError

F, B, SL, SR, TL, TR = range(6)  # the maze's actions (data_gen.maze.ACTIONS)
TABLE = odometry.Table.parse("turn=0,0,0,0,1,3;move=1,2,3,4,0,0", 6)


def latest(actions, frames):
    a = jnp.asarray([actions], jnp.int32)
    return np.asarray(odometry.latest_same_place(a, odometry.moved(jnp.asarray([frames])), TABLE))[0].tolist()


def test_a_walk_finds_the_frames_taken_at_the_same_pose():
    # 0: start; 1-4: four left turns (back to 0's pose); 5: forward; 6: back (0's pose again);
    # 7: strafe left into a wall (the frame does not change: the pose stays); 8: turn right
    actions = [F, TL, TL, TL, TL, F, B, SL, TR]
    frames = [0, 1, 2, 3, 0, 5, 0, 0, 8]
    assert latest(actions, frames) == [-1, -1, -1, -1, 0, -1, 4, -1, 3]
    # the query for frame t assumes its own step moves: frame 7 is looked for one cell to the left
    # (nothing there), but frame 8 is from the pose frame 7 really had (unchanged: blocked)


def test_the_match_reads_earlier_frames_and_actions_up_to_t_only():
    rng = np.random.default_rng(0)
    actions, frames = rng.integers(0, 6, 40), rng.integers(0, 3, 40)
    ref = latest(actions, frames)
    for t in range(1, 40):
        a2, f2 = actions.copy(), frames.copy()
        a2[t + 1:], f2[t:] = (a2[t + 1:] + 1) % 6, f2[t:] + 5
        assert latest(a2, f2)[:t + 1] == ref[:t + 1]


def test_fit_recovers_the_motion_of_each_action_from_maze_clips():
    eps = maze.generate(np.arange(12) + 10**6, maze.PRESETS["cpu"])
    table, rate = odometry.fit(eps["actions"], eps["video"], 6)
    # turns and forward are frequent enough to pin down; the rare side steps may be unresolved.
    # Poses are found up to a mirror image: left turns may come out as 3 quarter turns, right as 1
    assert {table.turn[TL], table.turn[TR]} == {1, 3} and table.move[F] == 1
    assert table.turn[F] == 0 and table.move[TL] == table.move[TR] == 0
    assert rate > 0.5


@pytest.mark.parametrize("text, problem", [("turn=0,1;move=1,0", "for 6 actions"), ("nonsense", "expected"),
                                           ("turn=0,0,0,0,1,7;move=1,2,3,4,0,0", "quarter turns")])
def test_bad_tables_are_named(text, problem):
    with pytest.raises(UserError, match=problem):
        odometry.Table.parse(text, 6)
