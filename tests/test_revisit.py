"""revisit_mask on hand-made poses."""

import math

import numpy as np
import pytest

from teco_jax.revisit import memory_mask, revisit_mask


def poses(*rows):
    """(T, 3) poses from (x, y, heading in degrees) rows."""
    return np.array([(x, y, math.radians(h)) for x, y, h in rows], np.float32)


def test_same_cell_and_heading_is_a_revisit():
    pose = poses((0.2, 0.3, 10), (1.5, 0.5, 0),     # context: cells (0, 0) and (1, 0)
                 (0.9, 0.7, 30),                     # cell (0, 0), 20 degrees off: revisit
                 (1.1, 0.1, -40),                    # cell (1, 0), 40 degrees off: revisit
                 (2.5, 0.5, 0))                      # cell (2, 0): never seen
    np.testing.assert_array_equal(revisit_mask(pose, split=2), [True, True, False])


def test_heading_90_degrees_off_is_new():
    pose = poses((0.5, 0.5, 0), (0.5, 0.5, 90), (0.5, 0.5, -90), (0.5, 0.5, 180))
    np.testing.assert_array_equal(revisit_mask(pose, split=1), [False, False, False])
    # ... until the context has looked that way too
    np.testing.assert_array_equal(revisit_mask(pose, split=2), [False, False])
    np.testing.assert_array_equal(revisit_mask(pose, split=3), [False])


def test_angle_wraps_around():
    pose = poses((3.5, 4.5, 359), (3.5, 4.5, 1), (3.5, 4.5, -179), (3.5, 4.5, 181 + 360))
    # 359 vs 1 degree: 2 apart; -179 vs 181 + 360: the same direction, but 180 away from 359
    np.testing.assert_array_equal(revisit_mask(pose, split=1), [True, False, False])
    np.testing.assert_array_equal(revisit_mask(pose[2:], split=1), [True])


def test_max_angle_is_inclusive_and_configurable():
    pose = poses((0.5, 0.5, 0), (0.5, 0.5, 45), (0.5, 0.5, 46))
    np.testing.assert_array_equal(revisit_mask(pose, split=1), [True, False])
    np.testing.assert_array_equal(revisit_mask(pose, split=1, max_angle_deg=50), [True, True])
    np.testing.assert_array_equal(revisit_mask(pose, split=1, max_angle_deg=0), [False, False])


def test_cells_are_floored_including_negative_coordinates():
    pose = poses((-0.5, 0.5, 0), (0.5, 0.5, 0), (-0.01, 0.99, 0), (0.0, 0.99, 0))
    np.testing.assert_array_equal(revisit_mask(pose, split=1), [False, True, False])


def test_leading_dimensions_and_edge_splits():
    pose = np.stack([poses((0.5, 0.5, 0), (0.5, 0.5, 0), (1.5, 0.5, 0)),
                     poses((0.5, 0.5, 0), (1.5, 0.5, 0), (0.5, 0.5, 20))])
    np.testing.assert_array_equal(revisit_mask(pose, split=1), [[True, False], [False, True]])
    assert revisit_mask(pose, split=0).shape == (2, 3) and not revisit_mask(pose, split=0).any()
    assert revisit_mask(pose, split=3).shape == (2, 0)
    assert revisit_mask(pose, split=5).shape == (2, 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pose must be"):
        revisit_mask(np.zeros((5, 2)), split=1)
    with pytest.raises(ValueError, match="split must be >= 0"):
        revisit_mask(np.zeros((5, 3)), split=-1)
    with pytest.raises(ValueError, match="max_angle_deg"):
        revisit_mask(np.zeros((5, 3)), split=1, max_angle_deg=200)


def test_memory_mask_keeps_places_seen_only_before_the_window():
    pose = poses((0.5, 0.5, 0), (1.5, 0.5, 0),      # early context: cells (0, 0), (1, 0)
                 (1.5, 0.5, 0), (2.5, 0.5, 0),      # the last 2 context frames: (1, 0), (2, 0)
                 (0.5, 0.5, 10),                    # seen only early: memory
                 (1.5, 0.5, 0),                     # seen early and in the window: not memory
                 (2.5, 0.5, 0),                     # seen only in the window: not memory
                 (3.5, 0.5, 0),                     # never seen
                 (0.5, 0.5, 180))                   # early cell, but facing the other way
    np.testing.assert_array_equal(memory_mask(pose, split=4, window=2), [True, False, False, False, False])
    np.testing.assert_array_equal(revisit_mask(pose, split=4), [True, True, True, False, False])
    # a window covering the whole context leaves nothing only the early context saw
    assert not memory_mask(pose, split=4, window=4).any()
    # leading dimensions (episodes) are kept
    assert memory_mask(np.stack([pose, pose]), split=4, window=2).shape == (2, 5)
