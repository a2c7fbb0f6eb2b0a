"""Exact any-angle paths: hand-worked maps, an exact brute force, octile and Euclidean bounds.

The brute force here shares no code with the planner: its line of sight cuts a segment at
every grid-line crossing in exact rationals (``fractions``) and classifies each crossing and
each piece between two crossings; the graph has an edge between every pair of mutually
visible lattice grid points (all of them, not only obstacle corners) and the start and goal,
and scipy's Dijkstra finds the shortest path. The legality check of a returned polyline is a
third independent rule: dense samples of its segments and exact distances to grid points.
"""

from __future__ import annotations

import math
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import descentlab.planning.anyangle as aa
from descentlab.planning.anyangle import AnyAngleMap, anyangle_lengths, anyangle_path
from descentlab.planning.discretize import anyangle_cells, cell_path_length, invalid_reason
from descentlab.planning.grid import maze_map, random_map, rooms_map
from descentlab.planning.search import astar

SQRT2 = math.sqrt(2.0)
HALF = F(1, 2)
MOVINGAI = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "movingai"


# ----------------------------------------------------------------------- the reference

def _blocked(occ, i, j) -> bool:
    h, w = occ.shape
    return not (0 <= i < h and 0 <= j < w) or bool(occ[i, j])


def _passable(occ, y: F, x: F) -> bool:
    """May a path pass through point (y, x)? (Rules of the module docstring.)"""
    on_h, on_v = (y - HALF).denominator == 1, (x - HALF).denominator == 1  # on a grid line
    if on_h and on_v:  # grid point: 0, 1 or 2 side-by-side blocked squares
        a, b = int(y - HALF), int(x - HALF)
        nw, ne = _blocked(occ, a, b), _blocked(occ, a, b + 1)
        sw, se = _blocked(occ, a + 1, b), _blocked(occ, a + 1, b + 1)
        n = nw + ne + sw + se
        return n <= 1 or (n == 2 and nw != se)
    if on_h:  # edge between two cells of one column: not a wall
        a, j = int(y - HALF), math.floor(x + HALF)
        return not (_blocked(occ, a, j) and _blocked(occ, a + 1, j))
    if on_v:
        b, i = int(x - HALF), math.floor(y + HALF)
        return not (_blocked(occ, i, b) and _blocked(occ, i, b + 1))
    return not _blocked(occ, math.floor(y + HALF), math.floor(x + HALF))


def _ref_visible(occ, p, q) -> bool:
    """Exact line of sight: every crossing and every piece between crossings is passable."""
    p, q = (F(p[0]), F(p[1])), (F(q[0]), F(q[1]))
    ts = {F(0), F(1)}
    for k in range(2):
        d = q[k] - p[k]
        if d:
            lo, hi = sorted((p[k], q[k]))
            m = math.ceil(lo - HALF)
            while m + HALF <= hi:
                t = (m + HALF - p[k]) / d
                if 0 < t < 1:
                    ts.add(t)
                m += 1
    ts = sorted(ts)
    probes = [(a + b) / 2 for a, b in zip(ts[:-1], ts[1:])] + ts[1:-1]
    return all(_passable(occ, p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))
               for t in probes)


def _brute_force_length(occ, s, g) -> float:
    """Dijkstra on the full visibility graph of all passable grid points + start + goal."""
    h, w = occ.shape
    nodes = [(F(s[0]), F(s[1])), (F(g[0]), F(g[1]))]
    nodes += [(F(2 * a - 1, 2), F(2 * b - 1, 2)) for a in range(h + 1) for b in range(w + 1)
              if _passable(occ, F(2 * a - 1, 2), F(2 * b - 1, 2))]
    rows, cols, vals = [], [], []
    for i in range(len(nodes)):
        for j in range(i + 1, len(nodes)):
            if _ref_visible(occ, nodes[i], nodes[j]):
                d = math.dist(map(float, nodes[i]), map(float, nodes[j]))
                rows += [i, j]
                cols += [j, i]
                vals += [d, d]
    if s == g:
        return 0.0
    graph = csr_matrix((vals, (rows, cols)), shape=(len(nodes),) * 2)
    d = float(dijkstra(graph, indices=0)[1])
    return d if math.isfinite(d) else math.nan


def _illegal_reason(occ, points) -> str | None:
    """Independent legality check of a polyline by dense sampling and grid-point distances."""
    h, w = occ.shape
    pts = np.asarray(points, dtype=np.float64)
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(200, int(400 * np.linalg.norm(b - a)))
        t = np.linspace(0.0, 1.0, n + 1)[1:-1, None]
        smp = a + t * (b - a)  # (n-1, 2)
        cell = np.floor(smp + 0.5).astype(int)
        frac = smp - cell  # in [-0.5, 0.5)
        inside = np.all(np.abs(frac) < 0.5 - 1e-9, axis=1)
        for (i, j), ins in zip(cell.tolist(), inside.tolist()):
            if ins and _blocked(occ, i, j):
                return f"sample inside blocked cell {(i, j)} on {a} -> {b}"
        on_h = np.abs(np.abs(frac[:, 0]) - 0.5) < 1e-12
        on_v = np.abs(np.abs(frac[:, 1]) - 0.5) < 1e-12
        for k in np.nonzero(on_h & ~on_v)[0]:
            y, x = smp[k]
            r, j = int(round(y - 0.5)), int(round(x))
            if _blocked(occ, r, j) and _blocked(occ, r + 1, j):
                return f"runs along the wall between ({r}, {j}) and ({r + 1}, {j})"
        for k in np.nonzero(on_v & ~on_h)[0]:
            y, x = smp[k]
            i, c = int(round(y)), int(round(x - 0.5))
            if _blocked(occ, i, c) and _blocked(occ, i, c + 1):
                return f"runs along the wall between ({i}, {c}) and ({i}, {c + 1})"
        # every grid point within 1e-9 of the open segment must be passable
        d = b - a
        for ga in range(h + 1):
            for gb in range(w + 1):
                gpt = np.array([ga - 0.5, gb - 0.5])
                u = float(np.dot(gpt - a, d) / np.dot(d, d))
                if 1e-9 < u < 1 - 1e-9 and np.linalg.norm(a + u * d - gpt) < 1e-9:
                    if not _passable(occ, F(2 * ga - 1, 2), F(2 * gb - 1, 2)):
                        return f"passes through the closed grid point {tuple(gpt)}"
    return None


def _check_result(occ, s, g, res):
    assert res.points.dtype == np.float64 and res.points.shape[1] == 2
    assert res.points[0].tolist() == list(map(float, s))
    assert res.points[-1].tolist() == list(map(float, g))
    seg = np.linalg.norm(np.diff(res.points, axis=0), axis=1).sum()
    assert res.length == pytest.approx(seg, abs=1e-9)
    assert _illegal_reason(occ, res.points) is None, _illegal_reason(occ, res.points)


# ----------------------------------------------------------------------- hand-worked maps

def test_empty_map_is_a_straight_line():
    occ = np.zeros((9, 12), dtype=bool)
    res = anyangle_path(occ, (1, 2), (7, 10))
    assert res.points.tolist() == [[1.0, 2.0], [7.0, 10.0]]
    assert res.length == pytest.approx(10.0, abs=1e-12)  # 6-8-10
    assert anyangle_path(occ, (4, 4), (4, 4)).length == 0.0


def test_detour_round_the_corner_of_one_blocked_square():
    # (2,0) -> (0,1): the straight line would cross square (1,1) ([0.5,1.5]^2); the path
    # bends at its corner (0.5, 0.5): sqrt(1.5^2 + 0.5^2) + sqrt(0.5^2 + 0.5^2).
    occ = np.zeros((3, 3), dtype=bool)
    occ[1, 1] = True
    res = anyangle_path(occ, (2, 0), (0, 1))
    assert res.points.tolist() == [[2.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert res.length == pytest.approx(math.sqrt(2.5) + math.sqrt(0.5), abs=1e-12)
    assert astar(occ, (2, 0), (0, 1)).length == 3.0  # octile may not cut that corner
    _check_result(occ, (2, 0), (0, 1), res)


def test_passing_through_the_corner_of_a_single_blocked_square_is_allowed():
    occ = np.zeros((3, 3), dtype=bool)
    occ[0, 1] = True  # the diagonal (0,0) -> (1,1) touches its corner (0.5, 0.5)
    res = anyangle_path(occ, (0, 0), (1, 1))
    assert res.points.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert res.length == pytest.approx(SQRT2, abs=1e-12)
    occ[1, 0] = True  # now (0.5, 0.5) is a pinch between two blocked squares: no passage
    assert not AnyAngleMap(occ).visible((0, 0), (1, 1))
    assert anyangle_path(occ, (0, 0), (1, 1)) is None  # and (0,0) is shut in


def test_wall_with_a_gap_two_segments():
    # Column 3 is a wall except the gap (1,3). From (5,0) the path bends once, at the gap's
    # lower-left corner (1.5, 2.5), and then passes through the gap to (0,6).
    occ = np.zeros((7, 7), dtype=bool)
    occ[:, 3] = True
    occ[1, 3] = False
    res = anyangle_path(occ, (5, 0), (0, 6))
    assert res.points.tolist() == [[5.0, 0.0], [1.5, 2.5], [0.0, 6.0]]
    assert res.length == pytest.approx(math.sqrt(3.5**2 + 2.5**2) + math.sqrt(1.5**2 + 3.5**2),
                                       abs=1e-12)
    _check_result(occ, (5, 0), (0, 6), res)


def test_no_squeezing_between_diagonal_blocks():
    # (1,1) and (2,2) touch at (1.5, 1.5); the straight (2,1) -> (1,2) goes through that
    # point. The way round one block: 2 * sqrt(0.5) + 2 (three of its edges, two halves).
    occ = np.zeros((4, 4), dtype=bool)
    occ[1, 1] = occ[2, 2] = True
    res = anyangle_path(occ, (2, 1), (1, 2))
    assert res.length == pytest.approx(2 + SQRT2, abs=1e-12)
    assert [1.5, 1.5] not in res.points.tolist()
    _check_result(occ, (2, 1), (1, 2), res)
    m = AnyAngleMap(occ)
    assert not m.visible((2, 1), (1, 2))
    assert not m.visible((1.5, 0.5), (1.5, 2.5))  # along a grid line through the pinch too


def test_line_of_sight_rules():
    occ = np.zeros((4, 4), dtype=bool)
    occ[1, 1] = occ[1, 2] = True  # a horizontal bar [0.5,1.5] x [0.5,2.5]
    m = AnyAngleMap(occ)
    assert m.visible((0.5, -0.5), (0.5, 3.5))  # sliding along its top edge
    assert m.visible((0.5, 0.5), (1.5, 0.5))  # along its left edge
    assert not m.visible((0.5, 1.5), (1.5, 1.5))  # between its two squares: a wall
    assert not m.visible((1, 0), (1, 3))  # through it
    assert m.visible((0, 0), (3, 0.5))  # touches the corner (1.5, 0.5) of one square
    assert not m.visible((0, 0), (2.5, 1.5))  # cuts into square (1,1)


def test_staircase_corridor_beats_octile():
    # A 1-wide staircase (k,k), (k,k+1): octile must take 9 orthogonal steps (every
    # diagonal cuts a corner); the straight line (0,0) -> (4,5) stays in the corridor.
    occ = np.ones((5, 6), dtype=bool)
    for k in range(5):
        occ[k, k] = occ[k, k + 1] = False
    res = anyangle_path(occ, (0, 0), (4, 5))
    assert astar(occ, (0, 0), (4, 5)).length == 9.0
    assert res.length == pytest.approx(math.sqrt(41.0), abs=1e-12) and res.length < 9.0
    _check_result(occ, (0, 0), (4, 5), res)
    # a staircase that turns back: the path must bend at the turn
    occ = np.ones((6, 7), dtype=bool)
    for k in range(3):
        occ[k, k] = occ[k, k + 1] = False
        occ[k + 3, 3 - k] = occ[k + 3, 2 - k] = False
    occ[3, 3] = False
    res = anyangle_path(occ, (0, 0), (5, 0))
    assert res.length < astar(occ, (0, 0), (5, 0)).length
    assert res.length == pytest.approx(_brute_force_length(occ, (0, 0), (5, 0)), abs=1e-9)
    _check_result(occ, (0, 0), (5, 0), res)


def test_unreachable_blocked_and_off_map():
    occ = np.zeros((5, 5), dtype=bool)
    occ[:, 2] = True
    assert anyangle_path(occ, (0, 0), (0, 4)) is None
    assert anyangle_path(occ, (0, 2), (0, 4)) is None  # start on an obstacle
    with pytest.raises(ValueError):
        anyangle_path(occ, (0, 0), (5, 0))
    out = anyangle_lengths(occ, [(0, 0), (0, 0), (1, 1)], [(4, 1), (0, 4), (1, 1)])
    assert out[0] == pytest.approx(math.hypot(4, 1)) and math.isnan(out[1]) and out[2] == 0.0


# ----------------------------------------------------------------------- random maps

@pytest.fixture(params=["default", "numpy-batches-l1-heuristic"])
def variant(request, monkeypatch):
    """Run with the defaults, and with every candidate batch checked in NumPy and the L1
    heuristic switched on from the first expansion (the paths the big maps take)."""
    if request.param != "default":
        monkeypatch.setattr(aa, "_SCALAR_BATCH", 0)
        monkeypatch.setattr(aa, "_SWITCH_AFTER", 1)
    return request.param


def _random_case(rng, hmax, wmax, dmax=0.45):
    h, w = int(rng.integers(2, hmax + 1)), int(rng.integers(2, wmax + 1))
    occ = rng.random((h, w)) < rng.uniform(0.05, dmax)
    free = np.argwhere(~occ)
    if len(free) < 2:
        return None
    s, g = (tuple(int(v) for v in c) for c in free[rng.choice(len(free), 2, replace=False)])
    return occ, s, g


def test_matches_brute_force_on_tiny_maps(variant):
    rng = np.random.default_rng(2024)
    checked = unreachable = 0
    while checked < 50:
        case = _random_case(rng, 6, 5)
        if case is None:
            continue
        occ, s, g = case
        res = anyangle_path(occ, s, g)
        ref = _brute_force_length(occ, s, g)
        if math.isnan(ref):
            assert res is None
            unreachable += 1
        else:
            assert res is not None and res.length == pytest.approx(ref, abs=1e-9), (occ, s, g)
        checked += 1
    assert 0 < unreachable < checked


def test_line_of_sight_matches_the_exact_reference():
    rng = np.random.default_rng(7)
    n = 0
    for _ in range(40):
        occ = rng.random((int(rng.integers(2, 6)), int(rng.integers(2, 6)))) < 0.35
        m = AnyAngleMap(occ)
        h, w = occ.shape
        for _ in range(40):
            kind = rng.integers(2, size=2)  # 0: cell centre, 1: grid point
            p = [float(rng.integers(0, h)) - 0.5 * kind[0], float(rng.integers(0, w)) - 0.5 * kind[0]]
            q = [float(rng.integers(0, h + kind[1])) - 0.5 * kind[1],
                 float(rng.integers(0, w + kind[1])) - 0.5 * kind[1]]
            if p == q:
                continue
            assert m.visible(p, q) == _ref_visible(occ, p, q), (occ, p, q)
            n += 1
    assert n > 1000


def test_random_maps_bounds_and_legality(variant):
    rng = np.random.default_rng(11)
    checked = reachable = 0
    while checked < 60:
        case = _random_case(rng, 16, 16, dmax=0.4)
        if case is None:
            continue
        occ, s, g = case
        res, ref = anyangle_path(occ, s, g), astar(occ, s, g)
        checked += 1
        if ref is None:
            assert res is None
            continue
        reachable += 1
        assert res.length <= ref.length + 1e-9
        assert res.length >= math.dist(s, g) - 1e-12
        _check_result(occ, s, g, res)
    assert reachable > 20


def test_medium_maps_match_a_full_visibility_graph(variant):
    # 24x24 maps: Dijkstra on the full visibility graph of all passable grid points, its
    # edges by the exact line of sight (itself checked against the reference above); this
    # checks the sweep, the pruning and the heuristics where the visible regions are big.
    rng = np.random.default_rng(3)
    for density in (0.08, 0.15, 0.25, 0.35):
        occ = rng.random((24, 24)) < density
        m = AnyAngleMap(occ)
        h, w = occ.shape
        pts = [(a - 0.5, b - 0.5) for a in range(h + 1) for b in range(w + 1)
               if _passable(occ, F(2 * a - 1, 2), F(2 * b - 1, 2))]
        free = np.argwhere(~occ)
        for _ in range(3):
            s, g = (tuple(int(v) for v in c) for c in free[rng.choice(len(free), 2, replace=False)])
            nodes = np.array([s, g] + pts, dtype=np.float64)  # (N, 2)
            dbl = np.rint(2 * nodes + 3).astype(np.int64)
            i, j = np.triu_indices(len(nodes), 1)
            vis = m._los(dbl[i], dbl[j])
            d = np.linalg.norm(nodes[i[vis]] - nodes[j[vis]], axis=1)
            graph = csr_matrix((d, (i[vis], j[vis])), shape=(len(nodes),) * 2)
            ref = float(dijkstra(graph, directed=False, indices=0)[1])
            res = m.path(s, g)
            if not math.isfinite(ref):
                assert res is None
            else:
                assert res.length == pytest.approx(ref, abs=1e-9), (density, s, g)


def test_batch_reuses_the_map_and_agrees_with_single_queries():
    rng = np.random.default_rng(5)
    occ = rng.random((30, 30)) < 0.25
    free = np.argwhere(~occ)
    idx = rng.choice(len(free), size=(12, 2))
    starts, goals = free[idx[:, 0]], free[idx[:, 1]]
    out = anyangle_lengths(occ, starts, goals)
    assert out.shape == (12,) and out.dtype == np.float64
    for s, g, v in zip(starts, goals, out):
        res = anyangle_path(occ, tuple(s), tuple(g))
        oct_ = astar(occ, tuple(s), tuple(g))
        assert (res is None) == (oct_ is None) == math.isnan(v)
        if res is not None:
            assert v == res.length and math.dist(s, g) - 1e-12 <= v <= oct_.length + 1e-9


def test_movingai_arena2_below_octile_optimum():
    path = MOVINGAI / "dao" / "arena2.map"
    if not path.exists():
        pytest.skip(f"MovingAI benchmark files not found at {path}")
    from descentlab.planning.grid import load_map, load_scenarios, sample_scenarios

    grid = load_map(path)
    m = AnyAngleMap(grid.occ)
    for sc in sample_scenarios(load_scenarios(f"{path}.scen", grid), 6):
        res = m.path(sc.start, sc.goal)
        assert math.dist(sc.start, sc.goal) - 1e-9 <= res.length <= sc.optimal_length + 1e-6
        assert res.length < sc.optimal_length or sc.optimal_length < 3


# ----------------------------------------------------------------------- cell paths

def _touches(points, cell) -> bool:
    """Does the polyline meet the closed square of ``cell``? (Liang-Barsky, exact.)"""
    lo = [F(c) - HALF for c in cell]
    hi = [F(c) + HALF for c in cell]
    pts = [(F(float(a)), F(float(b))) for a, b in np.asarray(points).tolist()]
    for p, q in zip(pts, pts[1:] or pts):
        t0, t1 = F(0), F(1)
        for k in range(2):
            d = q[k] - p[k]
            if d == 0:
                if not lo[k] <= p[k] <= hi[k]:
                    t0, t1 = F(1), F(0)
                continue
            a, b = sorted(((lo[k] - p[k]) / d, (hi[k] - p[k]) / d))
            t0, t1 = max(t0, a), min(t1, b)
        if t0 <= t1:
            return True
    return False


def _check_cells(occ, s, g, res):
    cells = anyangle_cells(res.points, occ)
    assert cells.dtype == np.int64 and cells.shape[1] == 2
    assert invalid_reason(occ, cells, s, g) is None, (invalid_reason(occ, cells, s, g), occ, s, g)
    assert tuple(cells[0]) == s and tuple(cells[-1]) == g
    assert all(_touches(res.points, c) for c in cells.tolist()), (occ, s, g)
    return cells


# 20 seeded 10x10 maps at two densities, 3 mazes 11x11, 3 room maps 17x17; 8 plans on each
_CELL_MAPS = ([random_map(10, 10, d, seed).occ for seed in range(12) for d in (0.2, 0.35)]
              + [maze_map(5, seed).occ for seed in range(3)]
              + [rooms_map(17, 4, seed).occ for seed in range(3)])


def test_cells_of_every_plan_are_a_valid_octile_path():
    # the lengths are those of the planner before anyangle_cells existed (pinned: the cells
    # are derived from the polyline, the reported length stays the exact optimum)
    plans, total = 0, 0.0
    for k, occ in enumerate(_CELL_MAPS):
        m = AnyAngleMap(occ)
        free = np.argwhere(~occ)
        rng = np.random.default_rng(k)
        for _ in range(8):
            s, g = (tuple(int(v) for v in c) for c in free[rng.choice(len(free), 2, replace=False)])
            res = m.path(s, g)
            if res is None:
                continue
            cells = _check_cells(occ, s, g, res)
            oct_ = astar(occ, s, g)
            # a valid cell path is a legal polyline, and no shorter than the octile optimum
            assert res.length <= oct_.length + 1e-9 <= cell_path_length(cells) + 2e-9
            plans += 1
            total += res.length
    assert plans == 213
    assert total == pytest.approx(1598.8332713190482, abs=1e-9)


def test_cells_where_the_path_grazes_a_corner():
    # the detour bends at the corner (0.5, 0.5) of square (1,1): the supercover of
    # (2,0) -> (0.5,0.5) ends in (1,1); the cells go round it by (1,0) and (0,0)
    occ = np.zeros((3, 3), dtype=bool)
    occ[1, 1] = True
    res = anyangle_path(occ, (2, 0), (0, 1))
    assert res.points.tolist() == [[2.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert _check_cells(occ, (2, 0), (0, 1), res).tolist() == [[2, 0], [1, 0], [0, 0], [0, 1]]
    # through the corner point of one blocked square, either way round: no octile diagonal
    for blocked, via in (((0, 1), (1, 0)), ((1, 0), (0, 1))):
        occ = np.zeros((3, 3), dtype=bool)
        occ[blocked] = True
        res = anyangle_path(occ, (0, 0), (1, 1))
        assert res.points.tolist() == [[0.0, 0.0], [1.0, 1.0]]
        assert _check_cells(occ, (0, 0), (1, 1), res).tolist() == [[0, 0], list(via), [1, 1]]


def test_cells_where_the_path_runs_along_an_obstacle_edge():
    # a bar (1,1)..(1,3) under a free row: the path slides along its top edge, row line 0.5,
    # where the supercover picks row 1 (the bar); the cells keep to row 0
    occ = np.zeros((2, 5), dtype=bool)
    occ[1, 1:4] = True
    res = anyangle_path(occ, (1, 0), (1, 4))
    assert res.points.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.5, 3.5], [1.0, 4.0]]
    assert res.length == pytest.approx(3 + SQRT2, abs=1e-12)
    cells = _check_cells(occ, (1, 0), (1, 4), res)
    assert cells.tolist() == [[1, 0], [0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 4]]
    # the same along a vertical edge, and with a free cell on both sides of the line
    assert _check_cells(occ.T.copy(), (0, 1), (4, 1),
                        anyangle_path(occ.T.copy(), (0, 1), (4, 1))).tolist() == \
        [[0, 1], [0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [4, 1]]
    free = np.zeros((3, 3), dtype=bool)
    pts = np.array([[0.0, 0.0], [0.5, 0.5], [0.5, 2.5], [1.0, 2.0]])
    assert invalid_reason(free, anyangle_cells(pts, free), (0, 0), (1, 2)) is None


def test_cells_of_an_illegal_polyline_raise():
    occ = np.zeros((3, 3), dtype=bool)
    occ[1, 1] = True
    with pytest.raises(ValueError, match="no free cell"):
        anyangle_cells(np.array([[1.0, 0.0], [1.0, 2.0]]), occ)  # through (1,1)
    pinch = np.array([[False, True], [True, False]])  # (0,0) -> (1,1) through (0.5, 0.5)
    with pytest.raises(ValueError, match="squeezes"):
        anyangle_cells(np.array([[0.0, 0.0], [1.0, 1.0]]), pinch)
    with pytest.raises(ValueError, match="half-integer"):
        anyangle_cells(np.array([[0.0, 0.0], [0.3, 1.0]]), occ)
    assert anyangle_cells(np.array([[2.0, 2.0]]), occ).tolist() == [[2, 2]]
