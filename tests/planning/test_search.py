"""A*: optimal octile lengths (MovingAI .scen optima, Dijkstra), no corner cutting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import descentlab.planning
from descentlab.planning.discretize import cell_path_length, invalid_reason
from descentlab.planning.grid import load_map, load_scenarios, random_map, sample_scenarios
from descentlab.planning.search import astar, octile_distance

MOVINGAI = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "movingai"
MAPS = ["random/random512-10-0.map", "maze/maze512-1-0.map", "room/8room_000.map",
        "dao/arena2.map"]
SQRT2 = math.sqrt(2.0)


EMBEDDED = Path(descentlab.planning.__file__).parent / "data" / "arena2.map"


@pytest.mark.parametrize("rel", ["embedded/arena2.map", *MAPS])
def test_lengths_equal_movingai_optima(rel):
    # The embedded arena2 map and scenarios ship with the package: that case always runs.
    path = EMBEDDED if rel.startswith("embedded/") else MOVINGAI / rel
    if not path.exists() or not Path(f"{path}.scen").exists():
        pytest.skip(f"MovingAI benchmark files not found at {path} (expected ../shared beside "
                    f"the repository)")
    grid = load_map(path)
    scenarios = sample_scenarios(load_scenarios(f"{path}.scen", grid), 10)
    assert len(scenarios) == 10
    for sc in scenarios:
        res = astar(grid.occ, sc.start, sc.goal)
        assert res is not None, f"{rel}: no path for scenario {sc}"
        assert res.length == pytest.approx(sc.optimal_length, rel=1e-6), (rel, sc)
        assert invalid_reason(grid.occ, res.cells, sc.start, sc.goal) is None
        assert res.length == pytest.approx(cell_path_length(res.cells), abs=1e-9)
        assert len(res.cells) <= res.expanded <= int((~grid.occ).sum())


def test_no_corner_cutting_takes_the_longer_way():
    occ = np.zeros((2, 2), dtype=bool)
    occ[0, 1] = True  # cutting (0,0) -> (1,1) would cost sqrt2
    res = astar(occ, (0, 0), (1, 1))
    assert res.cells.tolist() == [[0, 0], [1, 0], [1, 1]]
    assert res.length == 2.0
    occ[1, 0] = True  # both sides blocked: the diagonal gap is no passage
    assert astar(occ, (0, 0), (1, 1)) is None


def test_no_corner_cutting_around_a_wall_end():
    # A wall in column 2, rows 0..3. Cutting its end, (3,1) -> (4,2) -> (3,3), would be
    # shorter; the legal optimum is (0,0) down to (3,0), diagonal to (4,1), across to (4,3),
    # diagonal to (3,4), up to (0,4): 3 + sqrt2 + 2 + sqrt2 + 3 = 8 + 2 sqrt2.
    occ = np.zeros((6, 5), dtype=bool)
    occ[0:4, 2] = True
    res = astar(occ, (0, 0), (0, 4))
    assert invalid_reason(occ, res.cells, (0, 0), (0, 4)) is None
    steps = [(tuple(a), tuple(b)) for a, b in zip(res.cells[:-1].tolist(), res.cells[1:].tolist())]
    assert ((3, 1), (4, 2)) not in steps and ((4, 2), (3, 3)) not in steps
    assert res.length == pytest.approx(8 + 2 * SQRT2, abs=1e-12)
    assert res.length == pytest.approx(_dijkstra_length(occ, (0, 0), (0, 4)), abs=1e-12)


def _dijkstra_length(occ: np.ndarray, start, goal) -> float:
    """Reference: scipy Dijkstra on the explicit legal-move graph (no corner cutting)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    h, w = occ.shape
    rows, cols, costs = [], [], []
    for i in range(h):
        for j in range(w):
            if occ[i, j]:
                continue
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if (di, dj) == (0, 0) or not (0 <= a < h and 0 <= b < w) or occ[a, b]:
                        continue
                    if di and dj and (occ[i, b] or occ[a, j]):
                        continue
                    rows.append(i * w + j)
                    cols.append(a * w + b)
                    costs.append(SQRT2 if di and dj else 1.0)
    graph = coo_matrix((costs, (rows, cols)), shape=(h * w, h * w)).tocsr()
    dist = dijkstra(graph, indices=start[0] * w + start[1])
    return float(dist[goal[0] * w + goal[1]])


@pytest.mark.parametrize("seed", range(6))
def test_matches_dijkstra_on_random_maps(seed):
    grid = random_map(24, 31, 0.3, seed=seed)
    rng = np.random.default_rng(seed)
    free = np.argwhere(~grid.occ)
    for _ in range(5):
        s, g = (tuple(int(v) for v in free[k]) for k in rng.choice(len(free), 2, replace=False))
        ref = _dijkstra_length(grid.occ, s, g)
        res = astar(grid.occ, s, g)
        if math.isinf(ref):
            assert res is None
        else:
            assert res.length == pytest.approx(ref, abs=1e-9)
            assert invalid_reason(grid.occ, res.cells, s, g) is None


def test_open_grid_length_is_octile_distance_and_ties_go_straight():
    occ = np.zeros((20, 30), dtype=bool)
    for s, g in [((0, 0), (19, 29)), ((5, 3), (5, 17)), ((19, 0), (0, 7)), ((4, 4), (4, 4))]:
        res = astar(occ, s, g)
        assert res.length == pytest.approx(octile_distance(s, g), abs=1e-12)
    assert octile_distance((0, 0), (3, 5)) == pytest.approx(2 + 3 * SQRT2)
    # Equal-f nodes go to the larger g: a straight run expands only the path's cells.
    res = astar(occ, (0, 0), (0, 10))
    assert res.expanded == 11 and len(res.cells) == 11
    res = astar(occ, (4, 4), (4, 4))
    assert res.cells.tolist() == [[4, 4]] and res.length == 0.0


def test_unreachable_blocked_and_off_map():
    occ = np.zeros((7, 7), dtype=bool)
    occ[2:5, 2] = occ[2:5, 4] = occ[2, 2:5] = occ[4, 2:5] = True  # a closed box around (3, 3)
    assert astar(occ, (0, 0), (3, 3)) is None
    assert astar(occ, (3, 3), (0, 0)) is None
    assert astar(occ, (2, 2), (0, 0)) is None  # start on an obstacle
    with pytest.raises(ValueError):
        astar(occ, (0, 0), (7, 0))
