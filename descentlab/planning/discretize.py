"""Continuous waypoints -> an 8-connected cell path (no corner cutting), and its validity.

Cell ``(i, j)`` is the unit square centred on the integer point ``(i, j)`` (row, column):
``[i-0.5, i+0.5) x [j-0.5, j+0.5)``, the convention of the soft position map (SPEC A).

The cell path of a polyline is every cell the polyline passes through (a 4-connected
"supercover" walk, Amanatides & Woo 1987), with loops removed, and then each orthogonal
L-step ``a -> b -> c`` replaced by the diagonal ``a -> c`` where both cells beside the
diagonal are free (MovingAI rule: a diagonal move may not cut an obstacle's corner). A
polyline that keeps any positive clearance from obstacle squares therefore yields a valid
path; one that crosses an obstacle yields a path that says so.

A polyline with zero clearance (the exact any-angle optimum, which grazes corners and runs
along edges) gets its cells from :func:`anyangle_cells` instead: where the supercover
would take a blocked cell beside the line, it takes the free one.
"""

from __future__ import annotations

import math

import numpy as np

SQRT2 = math.sqrt(2.0)


def point_cell(p: np.ndarray) -> tuple[int, int]:
    """The cell containing point ``p = (x, y)``."""
    return int(math.floor(p[0] + 0.5)), int(math.floor(p[1] + 0.5))


def _segment_cells(p0: np.ndarray, p1: np.ndarray, out: list[tuple[int, int]]) -> None:
    """Append the cells after the first that segment p0 -> p1 passes through (4-connected)."""
    ci, cj = point_cell(p0)
    ei, ej = point_cell(p1)
    d = p1 - p0
    si = 1 if d[0] > 0 else -1
    sj = 1 if d[1] > 0 else -1
    inf = float("inf")
    ti = ((ci + 0.5 * si) - p0[0]) / d[0] if d[0] != 0 else inf  # param t of next row boundary
    tj = ((cj + 0.5 * sj) - p0[1]) / d[1] if d[1] != 0 else inf
    dti = abs(1.0 / d[0]) if d[0] != 0 else inf
    dtj = abs(1.0 / d[1]) if d[1] != 0 else inf
    for _ in range(abs(ei - ci) + abs(ej - cj)):
        if ci == ei and cj == ej:
            break
        if (ti <= tj and ci != ei) or cj == ej:
            ci += si
            ti += dti
        else:
            cj += sj
            tj += dtj
        out.append((ci, cj))


def supercover_cells(waypoints: np.ndarray) -> np.ndarray:
    """All cells a polyline passes through, in order, 4-connected. (T, 2) -> (L, 2) int."""
    wp = np.asarray(waypoints, dtype=np.float64)
    cells = [point_cell(wp[0])]
    for t in range(len(wp) - 1):
        _segment_cells(wp[t], wp[t + 1], cells)
    return np.asarray(cells, dtype=np.int64).reshape(-1, 2)


def remove_loops(cells: np.ndarray) -> np.ndarray:
    """Cut every loop: when a cell reappears, drop what lay between its two visits. (L, 2)."""
    out: list[tuple[int, int]] = []
    pos: dict[tuple[int, int], int] = {}
    for c in map(tuple, cells.tolist()):
        if c in pos:
            k = pos[c]
            for dropped in out[k + 1:]:
                pos.pop(dropped, None)
            del out[k + 1:]
        else:
            pos[c] = len(out)
            out.append(c)
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _free(occ: np.ndarray, i: int, j: int) -> bool:
    h, w = occ.shape
    return 0 <= i < h and 0 <= j < w and not occ[i, j]


def diagonalize(cells: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Replace L-steps ``a -> b -> c`` (a, c diagonal neighbours) by ``a -> c`` where legal.

    Legal means both cells beside the diagonal (``b`` and ``a + c - b``) are free.
    """
    out: list[tuple[int, int]] = []
    cl = [tuple(c) for c in cells.tolist()]
    k = 0
    while k < len(cl):
        out.append(cl[k])
        if k + 2 < len(cl):
            a, b, c = cl[k], cl[k + 1], cl[k + 2]
            if abs(a[0] - c[0]) == 1 and abs(a[1] - c[1]) == 1:
                d = (a[0] + c[0] - b[0], a[1] + c[1] - b[1])
                if _free(occ, *b) and _free(occ, *d):
                    k += 2
                    continue
        k += 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def cell_path_from_waypoints(waypoints: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """The 8-connected cell path of a polyline. waypoints (T, 2) float, occ (H, W) bool -> (L, 2)."""
    return diagonalize(remove_loops(supercover_cells(waypoints)), occ)


def cell_path_length(cells: np.ndarray) -> float:
    """Octile length: 1 per straight step, sqrt(2) per diagonal step. cells (L, 2)."""
    steps = np.abs(np.diff(np.asarray(cells), axis=0))
    diag = int(np.sum((steps[:, 0] == 1) & (steps[:, 1] == 1)))
    return float(len(steps) - diag + SQRT2 * diag)


def polyline_length(waypoints: np.ndarray) -> float:
    """Euclidean length of a polyline. (T, 2) -> float."""
    wp = np.asarray(waypoints, dtype=np.float64)
    return float(np.linalg.norm(np.diff(wp, axis=0), axis=1).sum())


def invalid_reason(occ: np.ndarray, cells: np.ndarray, start: tuple[int, int],
                   goal: tuple[int, int]) -> str | None:
    """Why ``cells`` is not a legal path from start to goal, or None if it is.

    Legal: starts at ``start``, ends at ``goal``, every cell on the map and free, every step
    to one of the 8 neighbours, and no diagonal step past an obstacle corner.
    """
    cells = np.asarray(cells)
    if len(cells) == 0:
        return "empty path"
    if tuple(cells[0]) != tuple(start):
        return f"starts at {tuple(cells[0])}, not at the start {tuple(start)}"
    if tuple(cells[-1]) != tuple(goal):
        return f"ends at {tuple(cells[-1])}, not at the goal {tuple(goal)}"
    for k, (i, j) in enumerate(cells.tolist()):
        if not _free(occ, i, j):
            return f"cell {k} {(i, j)} is an obstacle or off the map"
    for k in range(len(cells) - 1):
        (i0, j0), (i1, j1) = cells[k].tolist(), cells[k + 1].tolist()
        di, dj = abs(i1 - i0), abs(j1 - j0)
        if max(di, dj) != 1:
            return f"step {k} {(i0, j0)} -> {(i1, j1)} is not a move to a neighbour"
        if di == 1 and dj == 1 and not (_free(occ, i0, j1) and _free(occ, i1, j0)):
            return f"step {k} {(i0, j0)} -> {(i1, j1)} cuts an obstacle corner"
    return None


def _cell_range(num: int, den: int) -> tuple[int, ...]:
    """Cells whose closed extent along one axis holds the point ``num / den`` in doubled
    coordinates (cell ``i`` spans ``[2i - 1, 2i + 1]``): one cell, or two on a grid line."""
    if num % den == 0 and (num // den) % 2:
        k = num // den
        return (k - 1) // 2, (k + 1) // 2
    return ((num + den) // (2 * den),)


def _free_cells_along(occ: np.ndarray, points: np.ndarray) -> list[tuple[tuple[int, int], ...]]:
    """Free candidate cells of every piece and crossing of the polyline, in order.

    ``points`` (P, 2) int64 doubled coordinates (``2 * (row, col)``). Each segment is cut at
    its grid-line crossings and its end; the result alternates pieces (open stretches
    between two cuts: one cell or, along a grid line, two) and points (the cuts: one cell
    at a cell centre, two on an edge, four at a grid point), each as the tuple of its free
    cells, and ends with the last point.
    """
    h, w = occ.shape
    layers: list[tuple[tuple[int, int], ...]] = []
    for (u0, v0), (u1, v1) in zip(points[:-1].tolist(), points[1:].tolist()):
        du, dv = u1 - u0, v1 - v0
        if du == 0 and dv == 0:
            continue
        n = (abs(du) or 1) * (abs(dv) or 1)  # parameter t = T / n, T integer at crossings
        ts = set()
        for a0, a1, da in ((u0, u1, du), (v0, v1, dv)):
            lo, hi = min(a0, a1), max(a0, a1)
            first = lo + 1 if lo % 2 == 0 else lo + 2  # odd lines strictly inside (lo, hi)
            ts.update((g - a0) * n // da for g in range(first, hi, 2))
        ts = sorted(ts)
        bounds = [0] + ts + [n]
        for ta, tb in zip(bounds[:-1], bounds[1:]):
            # the piece's midpoint (scale 2n), then the point at its far end
            spots = [(2 * u0 * n + du * (ta + tb), 2 * v0 * n + dv * (ta + tb), 2 * n),
                     (u0 * n + du * tb, v0 * n + dv * tb, n)]
            for un, vn, den in spots:
                layers.append(tuple((i, j) for i in _cell_range(un, den)
                                    for j in _cell_range(vn, den)
                                    if 0 <= i < h and 0 <= j < w and not occ[i, j]))
                if not layers[-1]:
                    raise ValueError(
                        f"segment {(u0 / 2, v0 / 2)} -> {(u1 / 2, v1 / 2)} passes "
                        f"{(un / den / 2, vn / den / 2)}, which has no free cell: "
                        "not a legal any-angle path on this map")
    return layers


def anyangle_cells(points: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """A valid 8-connected cell path that follows an any-angle polyline: (P, 2) -> (L, 2).

    ``points`` (P, 2) float ``(row, col)``: a legal polyline by the rules of
    :mod:`descentlab.planning.anyangle` (as :meth:`~.anyangle.AnyAngleMap.path` returns),
    coordinates integers or half-integers, from a cell centre to a cell centre; ``occ``
    (H, W) bool. The result passes :func:`invalid_reason` (free cells, 8-neighbour steps, a
    diagonal step only where both cells beside it are free, from the first point's cell to
    the last's), and every cell's closed square touches the polyline.
    :func:`cell_path_from_waypoints` does not do this: where a segment grazes
    a corner or slides along an edge its supercover may take the blocked side, and the
    exact optimum does both; and a segment through the corner point of one blocked square
    is legal here but is no octile diagonal.

    Method. Each segment is cut at its grid-line crossings and its end (exact, in doubled
    integer coordinates). Every *piece* between two cuts lies in one cell's interior or,
    along a grid line, on the edge of two cells; every *point* (a cut) lies in a cell's
    interior (a centre), on an edge (two cells) or at a grid point (four). Each gets the set
    of free cells whose closed square holds it, and one cell is chosen from each set: the
    current cell while it stays in the sets, else the candidate that stays longest (the
    greedy that changes cell least often). A diagonal change gets the free cell beside it
    inserted, which makes the walk 4-connected; then :func:`remove_loops` and
    :func:`diagonalize` (a loop cut joins a cell to a successor it already
    had; a diagonal is only taken where both cells beside it are free: both keep a walk
    valid).

    Why it is valid. (1) No set is empty: a legal path enters no blocked interior (a piece
    or point inside a cell: the cell is free), runs along or across no wall (an edge: one
    of its two cells is free), and passes only grid points with at most one blocked square
    or two side by side (two or more of the four free). (2) Two consecutive choices ``a``,
    ``b`` are equal or neighbours: of two neighbouring layers one is a point and the other
    a piece whose closure holds it, so the closed squares of ``a`` and ``b`` share that
    point. If they are diagonal, the point is the grid point between them, and of the two
    cells beside the step (the other two squares at that point) at least one is free: both
    blocked would make it a diagonal pinch, which a legal path never passes. That cell's
    square holds the point too, and it is an orthogonal neighbour of both. (3) The first
    piece lies in the start cell's interior and the last point is the goal cell's centre.
    A polyline that breaks (1) or (2) (an illegal one) raises ValueError.
    """
    occ = np.asarray(occ, dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    dbl = np.rint(2 * pts).astype(np.int64)  # (P, 2) doubled: cell centres even, lines odd
    if not np.array_equal(dbl, 2 * pts):
        raise ValueError("anyangle_cells takes integer or half-integer coordinates")
    if len(dbl) == 0 or (dbl[[0, -1]] % 2).any():
        raise ValueError("the polyline must run from a cell centre to a cell centre")
    h, w = occ.shape

    def free(c):
        return 0 <= c[0] < h and 0 <= c[1] < w and not occ[c]

    cur = (int(dbl[0, 0]) // 2, int(dbl[0, 1]) // 2)
    if not free(cur):
        raise ValueError(f"the polyline starts in {cur}, which is not a free cell")
    layers = _free_cells_along(occ, dbl)
    cells = [cur]
    for k, cand in enumerate(layers):
        if cur in cand:
            continue

        def run(c, k=k):  # the first layer after k that does not hold c
            m = k
            while m < len(layers) and c in layers[m]:
                m += 1
            return m

        nxt = max(cand, key=run)  # ties: the first, in row-major order
        if nxt[0] != cur[0] and nxt[1] != cur[1]:  # diagonal: via a free cell beside it
            side = [c for c in ((cur[0], nxt[1]), (nxt[0], cur[1])) if free(c)]
            if not side:
                raise ValueError(f"the polyline squeezes between the blocked cells beside "
                                 f"{cur} -> {nxt}: not a legal any-angle path on this map")
            cells.append(side[0])
        cells.append(nxt)
        cur = nxt
    out = np.asarray(cells, dtype=np.int64).reshape(-1, 2)  # (L, 2) 4-connected walk
    return diagonalize(remove_loops(out), occ)
