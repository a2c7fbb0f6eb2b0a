"""Continuous waypoints -> an 8-connected cell path (no corner cutting), and its validity.

Cell ``(i, j)`` is the unit square centred on the integer point ``(i, j)`` (row, column):
``[i-0.5, i+0.5) x [j-0.5, j+0.5)``, the convention of the soft position map (SPEC A).

The cell path of a polyline is every cell the polyline passes through (a 4-connected
"supercover" walk, Amanatides & Woo 1987), with loops removed, and then each orthogonal
L-step ``a -> b -> c`` replaced by the diagonal ``a -> c`` where both cells beside the
diagonal are free (MovingAI rule: a diagonal move may not cut an obstacle's corner). A
polyline that keeps any positive clearance from obstacle squares therefore yields a valid
path; one that crosses an obstacle yields a path that says so.
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
