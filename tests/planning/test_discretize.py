"""Continuous waypoints -> 8-connected cell paths that never cut corners."""

import numpy as np
import pytest

from descentlab.planning.discretize import (
    cell_path_from_waypoints,
    cell_path_length,
    invalid_reason,
    polyline_length,
    remove_loops,
    supercover_cells,
)


def _never_cuts_corners(occ, cells):
    for (i0, j0), (i1, j1) in zip(cells[:-1].tolist(), cells[1:].tolist()):
        assert max(abs(i1 - i0), abs(j1 - j0)) == 1
        if abs(i1 - i0) == 1 and abs(j1 - j0) == 1:
            assert not occ[i0, j1] and not occ[i1, j0]


def test_diagonal_through_free_space_becomes_diagonal_moves():
    occ = np.zeros((6, 6), bool)
    cells = cell_path_from_waypoints(np.array([[0.0, 0.0], [5.0, 5.0]]), occ)
    assert cells.tolist() == [[i, i] for i in range(6)]
    assert cell_path_length(cells) == pytest.approx(5 * np.sqrt(2))


def test_diagonal_past_an_obstacle_corner_stays_orthogonal():
    occ = np.zeros((3, 3), bool)
    occ[0, 1] = True  # blocks the corner between (0,0) and (1,1)
    cells = cell_path_from_waypoints(np.array([[0.0, 0.0], [1.0, 1.0]]), occ)
    assert invalid_reason(occ, cells, (0, 0), (1, 1)) is None
    assert cells.tolist() == [[0, 0], [1, 0], [1, 1]]
    _never_cuts_corners(occ, cells)


def test_squeezing_between_diagonal_obstacles_is_invalid():
    occ = np.zeros((3, 3), bool)
    occ[0, 1] = occ[1, 0] = True
    cells = cell_path_from_waypoints(np.array([[0.0, 0.0], [1.0, 1.0]]), occ)
    assert "obstacle" in invalid_reason(occ, cells, (0, 0), (1, 1))


def test_random_polylines_give_legal_steps():
    rng = np.random.default_rng(0)
    for _ in range(30):
        occ = rng.random((25, 25)) < 0.2
        wp = rng.random((12, 2)) * 24
        cells = cell_path_from_waypoints(wp, occ)
        _never_cuts_corners(occ, cells)
        assert len({tuple(c) for c in cells.tolist()}) == len(cells)  # no loops


def test_supercover_visits_every_cell_the_segment_touches():
    cells = supercover_cells(np.array([[0.0, 0.0], [2.0, 0.9]]))
    # row boundary 0.5 at t=0.25, column boundary 0.5 at t=0.56, row boundary 1.5 at t=0.75
    assert cells.tolist() == [[0, 0], [1, 0], [1, 1], [2, 1]]


def test_remove_loops_cuts_back_and_forth():
    cells = np.array([[0, 0], [0, 1], [1, 1], [0, 1], [0, 2]])
    assert remove_loops(cells).tolist() == [[0, 0], [0, 1], [0, 2]]


def test_invalid_reasons():
    occ = np.zeros((4, 4), bool)
    occ[2, 2] = True
    good = np.array([[0, 0], [1, 1], [2, 1]])
    assert invalid_reason(occ, good, (0, 0), (2, 1)) is None
    assert "start" in invalid_reason(occ, good, (0, 1), (2, 1))
    assert "goal" in invalid_reason(occ, good, (0, 0), (3, 3))
    assert "neighbour" in invalid_reason(occ, np.array([[0, 0], [2, 0]]), (0, 0), (2, 0))
    corner = np.zeros((2, 2), bool)
    corner[0, 1] = True
    assert "corner" in invalid_reason(corner, np.array([[0, 0], [1, 1]]), (0, 0), (1, 1))
    assert "obstacle" in invalid_reason(occ, np.array([[1, 1], [2, 2]]), (1, 1), (2, 2))
    assert polyline_length(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
