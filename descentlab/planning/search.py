"""A* on the 8-connected grid: the baseline planner and the optimum for length ratios.

Moves follow the MovingAI octile rules (Sturtevant, "Benchmarks for Grid-Based
Pathfinding", 2012): 1 per straight step, sqrt(2) per diagonal step, and no corner cutting
(a diagonal step needs both orthogonal neighbours free). With the octile heuristic
``h = max(dr, dc) + (sqrt(2) - 1) min(dr, dc)``, which is consistent for these costs, the
first expansion of the goal gives an optimal path (Hart, Nilsson & Raphael 1968), so
:func:`astar` lengths equal the ``.scen`` optimal lengths (tested on the MovingAI maps).

Libraries checked (and why none is used):

- ``tcod`` 21.2 (``tcod.path.AStar`` and ``tcod.path.SimpleGraph``): on a 3x3 map with
  cell (0, 1) blocked both return the diagonal step (0, 0) -> (1, 1), which cuts the
  blocked corner; ``SimpleGraph`` also takes integer edge costs only, so sqrt(2) is not exact.
- ``pathfinding`` 1.0.23 (``AStarFinder`` with ``DiagonalMovement.only_when_no_obstacle``
  and the octile heuristic): right lengths on the scenarios tried, but pure Python with a
  ``Node`` object per cell: 0.9 s to build the grid of a 512x512 map, a reset of every node
  between searches, and slower searches: on 8 scenarios spread over the buckets of
  random512-10-0 / maze512-1-0 it took 2.3 s / 4.0 s in all (reset included, grid build
  not), this module 0.74 s / 1.14 s, with identical lengths.
- ``pyastar2d``: reported in issue 2 to price diagonal moves like straight ones and to cut
  corners (not re-checked here).

The implementation works on flat indices into a map padded with one ring of obstacles (no
bounds checks in the loop), with the 8 neighbour offsets and their corner-check offsets
precomputed, ``bytes``/``bytearray`` for free and closed flags (indexing them from Python is
2-3 times faster than indexing a NumPy array element by element), and heap entries
``(f, -g, index)`` so ties in f go to the node with the larger g (deeper, nearer the goal).
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

import numpy as np

SQRT2 = math.sqrt(2.0)
_DIAG_EXTRA = SQRT2 - 2.0  # octile: dr + dc + (sqrt2 - 2) min(dr, dc)


class SearchResult(NamedTuple):
    """A* result. ``cells`` (L, 2) int64 rows ``(row, col)`` from start to goal;
    ``length`` its octile length; ``expanded`` the number of nodes expanded (closed)."""

    cells: np.ndarray
    length: float
    expanded: int


def octile_distance(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Octile distance between cells ``a`` and ``b`` (the length on an obstacle-free grid)."""
    dr, dc = abs(a[0] - b[0]), abs(a[1] - b[1])
    return float(dr + dc + _DIAG_EXTRA * min(dr, dc))


def _check_on_map(shape: tuple[int, int], cell: tuple[int, int], what: str) -> tuple[int, int]:
    r, c = int(cell[0]), int(cell[1])
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        raise ValueError(f"{what} {(r, c)} is outside the {shape[0]}x{shape[1]} map")
    return r, c


def astar(occ: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> SearchResult | None:
    """Shortest 8-connected path without corner cutting, or None if the goal is unreachable.

    occ: (H, W) bool, True = obstacle. start, goal: ``(row, col)`` cells on the map (a start
    or goal outside the map raises ValueError; one on an obstacle gives None).
    Returns :class:`SearchResult` with ``cells`` (L, 2) from start to goal inclusive.
    """
    occ = np.asarray(occ, dtype=bool)
    if occ.ndim != 2:
        raise ValueError(f"occ must be a 2-D array, got shape {occ.shape}")
    h, w = occ.shape
    sr, sc = _check_on_map((h, w), start, "start")
    gr, gc = _check_on_map((h, w), goal, "goal")
    if occ[sr, sc] or occ[gr, gc]:
        return None
    wp = w + 2  # padded width: one ring of obstacles around the map
    free = (~np.pad(occ, 1, constant_values=True)).tobytes()  # (H+2)*(W+2) bytes, 1 = free
    n = (h + 2) * wp
    s = (sr + 1) * wp + (sc + 1)
    t = (gr + 1) * wp + (gc + 1)
    tr, tc = gr + 1, gc + 1
    # (offset, cost, side offset 1, side offset 2); sides 0 for straight moves.
    moves = [(-wp, 1.0, 0, 0), (wp, 1.0, 0, 0), (-1, 1.0, 0, 0), (1, 1.0, 0, 0),
             (-wp - 1, SQRT2, -wp, -1), (-wp + 1, SQRT2, -wp, 1),
             (wp - 1, SQRT2, wp, -1), (wp + 1, SQRT2, wp, 1)]
    inf = math.inf
    g = [inf] * n
    parent = [-1] * n
    closed = bytearray(n)
    g[s] = 0.0
    heap = [(octile_distance((sr, sc), (gr, gc)), -0.0, s)]
    push, pop = heapq.heappush, heapq.heappop
    expanded = 0
    found = False
    while heap:
        _, _, u = pop(heap)
        if closed[u]:
            continue
        closed[u] = 1
        expanded += 1
        if u == t:
            found = True
            break
        gu = g[u]
        for d, cost, s1, s2 in moves:
            v = u + d
            if not free[v] or closed[v]:
                continue
            if s1 and not (free[u + s1] and free[u + s2]):
                continue  # diagonal would cut an obstacle corner
            nv = gu + cost
            if nv < g[v]:
                g[v] = nv
                parent[v] = u
                vr, vc = divmod(v, wp)
                dr = vr - tr if vr > tr else tr - vr
                dc = vc - tc if vc > tc else tc - vc
                push(heap, (nv + dr + dc + _DIAG_EXTRA * (dr if dr < dc else dc), -nv, v))
    if not found:
        return None
    chain = [t]
    while chain[-1] != s:
        chain.append(parent[chain[-1]])
    flat = np.asarray(chain[::-1], dtype=np.int64)
    cells = np.stack([flat // wp - 1, flat % wp - 1], axis=1)  # (L, 2) unpadded (row, col)
    steps = np.abs(np.diff(cells, axis=0))  # (L-1, 2)
    n_diag = int(np.sum(steps[:, 0] + steps[:, 1] == 2))
    length = float(len(steps) - n_diag) + SQRT2 * n_diag
    return SearchResult(cells=cells, length=length, expanded=expanded)
