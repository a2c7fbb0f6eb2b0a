"""Exact any-angle shortest paths on a grid: a reference planner, like :func:`~.search.astar`.

The path is the shortest polyline from the start cell's centre to the goal cell's centre
that stays in the free space of the grid, read as a polygonal domain: cell ``(i, j)`` is the
closed unit square centred on ``(i, j)`` (row, column), outside the map is obstacle. The
polyline may touch obstacle squares, slide along their edges and pass through the corner
point of a single blocked square; it may not enter a blocked square's interior, run along
the grid line between two blocked squares (a wall), or pass through a grid point whose two
diagonal squares are blocked and the other two free (the corner-cutting rule of the
octile check in :mod:`.discretize`, made continuous); a grid point with 3 or more blocked
squares is no passage either. The result is never longer than the octile optimum of
:func:`~.search.astar` (a cell path without corner cutting is such a polyline) and never
shorter than the straight line.

Method. A shortest path in a polygonal domain is a taut string: it bends only at convex
vertices of the obstacles (Lozano-Pérez & Wesley 1979, the visibility graph). Here those are
the grid points with exactly one blocked square among their four; a point with two, three or
four blocked squares has an interior free angle of at most 180 degrees (or is no passage), so
no shortest path bends there. The planner is A* (Hart, Nilsson & Raphael 1968) on the
visibility graph of those corners plus start and goal, built lazily: only an expanded node's successors are found, and only
successors a shortest path can use (the pruning of the sparse visibility graph, Oh & Leong
2017, and of taut paths generally):

- *taut at the node*: a path ``p -> c -> q`` bending at corner ``c`` must turn towards the
  blocked square of ``c`` and not past it (its diagonal direction ``D`` lies strictly on the
  turning side of both ``c - p`` and ``q - c``); otherwise the bend can be cut. This holds
  for every shortest path through ``c`` whatever shortest parent A* recorded (a shortcut
  of one would shorten all), so recording one parent per node loses nothing;
- *tangent at the successor*: the line ``c -> q`` must not continue into ``q``'s blocked
  square or along its edge (at least one of the two components of ``q - c`` points away
  from that square), or no taut bend at ``q`` exists;
- *goal first*: when the goal is visible from ``c`` no other successor of ``c`` is needed
  (any path on through ``c`` is at least ``g(c) + |c - goal|`` long);
- *bound*: once the goal has a tentative length ``U``, a successor ``q`` with
  ``g(c) + |c - q| + |q - goal| > U`` is dropped.

Heuristic: the Euclidean distance to the goal, and after ``_SWITCH_AFTER`` expansions (long
searches: mazes, rooms) also the L1 geodesic distance to the goal over sqrt(2) (every path's
L1 length is at most sqrt(2) times its Euclidean length). The L1 distance is a breadth-first
search from the goal on the half-cell lattice of the free closed squares (the Hanan-grid
argument, see :meth:`AnyAngleMap._lattice_l1`, makes it a lower bound; the triangle
inequality makes it consistent). Both are consistent, so is their maximum, nodes already
closed keep exact distances when the open list is re-keyed, and the search stays exact; on
maze512-1-0 it expands 2-5 times fewer nodes.

Visible corners are found by an angular sweep (recursive shadowcasting, row by row, in each
half-plane above and below the node; Bergström 2001), plus scans along the node's own row
and column grid lines up to the first wall or closed grid point: a set of
angular intervals (slopes) still open is carried from one row of cells to the next, each
blocked cell of the row removing the open interval of directions that pass through its
interior, so the work is proportional to the area the node sees, not to the map. The sweep
runs in floating point and removes each interval shrunk by a relative 1e-9, so it returns a
superset of the visible corners; every candidate is then checked by an exact line-of-sight
test in integers (:meth:`AnyAngleMap.visible`): in doubled coordinates cell centres and grid
points are integers, the segment is cut into the column (or row) slabs it spans, and in each
slab the rows it meets are counted against prefix sums of the blocked cells; the grid points
it passes through and the grid lines it runs along are checked against prefix sums of the
pinch points and walls. Lengths are float64 sums of square roots of integers (two paths
whose lengths differ by less than float64 rounding are not told apart).

Measured (one shared CPU core, 10 scenarios per map spread over the buckets with
``sample_scenarios``): median / max seconds per problem random512-10-0 0.22 / 1.4,
arena2 0.01 / 0.03, 8room_000 0.45 / 0.70, maze512-1-0 0.40 / 0.61 (map precomputation
0.02-0.24 s once); median length / octile optimum 0.943, 0.947, 0.887, 0.760.

Unreachable goals (another 4-connected component of free cells, ``scipy.ndimage.label``;
4-connectivity is exactly the connectivity of this free space) give None without a search.
Per-map work (padding, corners, prefix sums, sweep tables, components) is done once by
:class:`AnyAngleMap`; :func:`anyangle_lengths` reuses it over a batch.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left, bisect_right
from typing import NamedTuple

import numpy as np

_EPS = 1e-9  # relative shrink of blocked slope intervals / margin of the float sweep
_SWITCH_AFTER = 1500  # expansions before the L1 lower bound joins the heuristic
_SCALAR_BATCH = 24  # up to this many candidates: filter and check them in plain Python


class AnyAngleResult(NamedTuple):
    """Any-angle result. ``points`` (P, 2) float64 ``(row, col)`` polyline from the start
    cell's centre to the goal cell's centre (P = 1 when start == goal); ``length`` its length."""

    points: np.ndarray
    length: float


def _check_cell(shape: tuple[int, int], cell, what: str) -> tuple[int, int]:
    r, c = int(cell[0]), int(cell[1])
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        raise ValueError(f"{what} {(r, c)} is outside the {shape[0]}x{shape[1]} map")
    return r, c


def _cum(a: np.ndarray) -> np.ndarray:
    """Prefix sums along the last axis with a leading 0: (..., n) -> (..., n+1) int32."""
    out = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), dtype=np.int32)
    np.cumsum(a, axis=-1, out=out[..., 1:])
    return out


def _slab_los(u0, v0, u1, v1, cellcum, cell_stride, bad, bad_stride) -> np.ndarray:
    """Exact blocked flags for general segments, cut into slabs along v.

    All arguments are int64 arrays (m,) in doubled coordinates with ``v1 > v0`` and
    ``u1 != u0``. ``cellcum[C * cell_stride + k]``: blocked cells among rows < k of column C;
    ``bad[Rc * bad_stride + Cc]``: grid point (2Rc, 2Cc) is no passage. Returns (m,) bool,
    True = blocked.
    """
    du, dv = u1 - u0, v1 - v0
    c_first = v0 // 2
    n_s = (v1 + 1) // 2 - c_first  # slabs C with (2C, 2C+2) meeting (v0, v1)
    seg = np.repeat(np.arange(len(u0)), n_s)
    starts = np.cumsum(n_s) - n_s
    offs = np.arange(len(seg)) - starts[seg]
    su0, sv0, sdu, sdv = u0[seg], v0[seg], du[seg], dv[seg]
    col = c_first[seg] + offs
    left = 2 * col
    va = np.maximum(left, sv0)
    vb = np.minimum(left + 2, sv0 + sdv)
    na = su0 * sdv + (va - sv0) * sdu  # u * dv at v = va, v = vb
    nb = su0 * sdv + (vb - sv0) * sdu
    den = 2 * sdv
    r_min = np.minimum(na, nb) // den
    r_max = -((-np.maximum(na, nb)) // den) - 1
    base = col * cell_stride
    fail = cellcum[base + r_max + 1] - cellcum[base + r_min] > 0
    n_left = su0 * sdv + (left - sv0) * sdu  # u * dv on the slab's left grid line
    at_point = (offs > 0) & (n_left % den == 0)
    if at_point.any():
        idx = np.nonzero(at_point)[0]
        fail[idx] |= bad[(n_left[idx] // den[idx]) * bad_stride + col[idx]]
    return np.bincount(seg, weights=fail, minlength=len(u0)) > 0


class AnyAngleMap:
    """Per-map precomputation for exact any-angle paths; see the module docstring.

    occ: (H, W) bool, True = obstacle. Coordinates inside are *doubled and padded*: the map
    is padded with one ring of obstacles, padded cell ``(R, C)`` is the square
    ``[2R, 2R+2] x [2C, 2C+2]``, so a map cell ``(i, j)`` has its centre at
    ``(2i+3, 2j+3)`` and the grid point between padded cells ``R-1, R`` and ``C-1, C``
    (corner ``(R, C)``) lies at ``(2R, 2C)``. ``last_expanded``: nodes the last search
    expanded (0 when start and goal see each other).
    """

    def __init__(self, occ: np.ndarray):
        from scipy.ndimage import label

        occ = np.array(occ, dtype=bool)
        if occ.ndim != 2 or occ.size == 0:
            raise ValueError(f"occ must be a non-empty 2-D array, got shape {occ.shape}")
        self.occ = occ
        self.shape = occ.shape
        h, w = occ.shape
        hp, wp = h + 2, w + 2
        self._hp, self._wp = hp, wp
        occp = np.pad(occ, 1, constant_values=True)  # (Hp, Wp)
        self._occp = occp
        self._labels = label(~occ)[0]  # (H, W) 4-connected components of free cells, 0 = blocked

        # grid points (corners) (Rc, Cc), Rc in [0, Hp], Cc in [0, Wp]; the border is no passage
        nw, ne, sw, se = occp[:-1, :-1], occp[:-1, 1:], occp[1:, :-1], occp[1:, 1:]
        nblk = np.full((hp + 1, wp + 1), 4, dtype=np.int8)
        nblk[1:-1, 1:-1] = nw.astype(np.int8) + ne + sw + se
        diag = np.zeros((hp + 1, wp + 1), dtype=bool)
        diag[1:-1, 1:-1] = (nblk[1:-1, 1:-1] == 2) & (nw == se)
        bad = (nblk >= 3) | diag  # (Hp+1, Wp+1) grid points no path may pass through
        self._bad = bad.ravel()
        self._badT = np.ascontiguousarray(bad.T).ravel()
        convex = nblk == 1
        rc, cc = np.nonzero(convex)  # row-major: sorted by (Rc, Cc)
        k = len(rc)
        self.n_corners = k
        du = np.where(occp[rc - 1, cc - 1] | occp[rc - 1, cc], -1, 1)  # towards the blocked cell
        dv = np.where(occp[rc - 1, cc - 1] | occp[rc, cc - 1], -1, 1)
        self._cpos = np.stack([2 * rc, 2 * cc], axis=1).astype(np.int64)  # (K, 2) doubled
        self._cdir = np.stack([du, dv], axis=1).astype(np.int64)  # (K, 2) in {-1, 1}
        row_start = np.searchsorted(rc, np.arange(hp + 2))
        self._row_base = row_start.tolist()  # ids of corner row Rc: row_base[Rc] .. [Rc+1]
        self._row_cols = [cc[row_start[r]:row_start[r + 1]].tolist() for r in range(hp + 1)]

        # exact line of sight: prefix sums of blocked cells, walls and bad points
        self._colcum = _cum(occp.T).ravel()  # (Wp, Hp+1): blocked rows < k of column C
        self._rowcum = _cum(occp).ravel()  # (Hp, Wp+1)
        hwall = np.ones((hp + 1, wp), dtype=bool)  # edge on line Rc over column C is a wall
        hwall[1:-1] = occp[:-1] & occp[1:]
        vwall = np.ones((wp + 1, hp), dtype=bool)  # edge on line Cc over row R (transposed)
        vwall[1:-1] = (occp[:, :-1] & occp[:, 1:]).T
        self._hwcum = _cum(hwall).ravel()  # (Hp+1, Wp+1)
        self._vwcum = _cum(vwall).ravel()  # (Wp+1, Hp+1)
        self._badh = _cum(bad).ravel()  # (Hp+1, Wp+2) along each horizontal line
        self._badv = _cum(bad.T).ravel()  # (Wp+1, Hp+2) along each vertical line

        # sweep tables (Python lists: indexed element by element from Python)
        cols = np.arange(wp)
        nxt = np.where(occp, cols, wp)
        self._next_blk = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1].tolist()
        self._prev_blk = np.maximum.accumulate(np.where(occp, cols, -1), axis=1).tolist()
        # grid-line scans from a corner: the first wall edge / bad point in each direction
        self._hline = _first_blockers(hwall, bad)  # along horizontal lines, by column
        self._vline = _first_blockers(vwall, bad.T)  # along vertical lines, by row
        order = np.lexsort((rc, cc))  # corner ids sorted by (Cc, Rc)
        col_start = np.searchsorted(cc[order], np.arange(wp + 2))
        self._col_rows = [rc[order[col_start[c]:col_start[c + 1]]].tolist()
                          for c in range(wp + 1)]
        self._col_ids = [order[col_start[c]:col_start[c + 1]].tolist() for c in range(wp + 1)]
        self._slope_gap = 0.25 / (hp + wp)  # below any slope of a lattice point off the line
        self._occ_rows = [bytes(r) for r in occp.astype(np.uint8)]
        # the same tables as compact arrays for the scalar line of sight and the search
        self._py = {name: array("i", getattr(self, name).astype(np.int32).tobytes())
                    for name in ("_colcum", "_rowcum", "_hwcum", "_vwcum", "_badh", "_badv")}
        self._py["_bad"] = array("b", self._bad.astype(np.int8).tobytes())
        self._py["_badT"] = array("b", self._badT.astype(np.int8).tobytes())
        self._pu, self._pv = (2 * rc).tolist(), (2 * cc).tolist()
        self._du, self._dv = du.tolist(), dv.tolist()
        self._lattice = None  # csr graph of the doubled lattice, built on first use
        self.last_expanded = 0

    # ------------------------------------------------------------------ line of sight

    def _los(self, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        """Exact line of sight for segments p0 -> p1: (n, 2) int64 doubled -> (n,) bool."""
        p0 = np.asarray(p0, dtype=np.int64).reshape(-1, 2)
        p1 = np.asarray(p1, dtype=np.int64).reshape(-1, 2)
        n = len(p0)
        ok = np.ones(n, dtype=bool)
        if n == 0:
            return ok
        d = p1 - p0
        adu, adv = np.abs(d[:, 0]), np.abs(d[:, 1])
        hp, wp = self._hp, self._wp
        # general segments along their major axis
        for major_v in (True, False):
            if major_v:
                sel = np.nonzero((adv >= adu) & (adu > 0))[0]
            else:
                sel = np.nonzero((adu > adv) & (adv > 0))[0]
            if len(sel) == 0:
                continue
            a, b = p0[sel], p1[sel]
            ax = 1 if major_v else 0  # the slab axis becomes "v"
            flip = b[:, ax] < a[:, ax]
            a, b = np.where(flip[:, None], b, a), np.where(flip[:, None], a, b)
            if major_v:
                blk = _slab_los(a[:, 0], a[:, 1], b[:, 0], b[:, 1], self._colcum, hp + 1,
                                self._bad, wp + 1)
            else:
                blk = _slab_los(a[:, 1], a[:, 0], b[:, 1], b[:, 0], self._rowcum, wp + 1,
                                self._badT, hp + 1)
            ok[sel] = ~blk
        # axis-aligned segments: O(1) each with the prefix sums
        for horizontal in (True, False):
            if horizontal:
                sel = np.nonzero((adu == 0) & (adv > 0))[0]
                ax, other = 1, 0
            else:
                sel = np.nonzero((adv == 0) & (adu > 0))[0]
                ax, other = 0, 1
            if len(sel) == 0:
                continue
            lo = np.minimum(p0[sel, ax], p1[sel, ax])
            hi = np.maximum(p0[sel, ax], p1[sel, ax])
            line = p0[sel, other]
            c0, c1 = lo // 2, (hi + 1) // 2  # cells / edges c0 .. c1-1 along the segment
            g0, g1 = lo // 2 + 1, (hi + 1) // 2  # grid points g0 .. g1-1 strictly inside
            odd = line % 2 == 1
            if horizontal:
                cells, cstride = self._rowcum, wp + 1
                walls, wstride = self._hwcum, wp + 1
                bads, bstride = self._badh, wp + 2
            else:
                cells, cstride = self._colcum, hp + 1
                walls, wstride = self._vwcum, hp + 1
                bads, bstride = self._badv, hp + 2
            r = line // 2
            blk = np.where(odd, cells[r * cstride + c1] - cells[r * cstride + c0],
                           walls[r * wstride + c1] - walls[r * wstride + c0]) > 0
            blk |= ~odd & (bads[r * bstride + np.maximum(g1, g0)] - bads[r * bstride + g0] > 0)
            ok[sel] = ~blk
        return ok

    def visible(self, p, q) -> bool:
        """Exact line of sight between two points in map coordinates ``(row, col)``.

        Each coordinate must be an integer (cell centre line) or a half-integer (grid line);
        the segment is legal by the rules of the module docstring (endpoints not checked).
        """
        a = np.rint(2 * np.asarray(p, dtype=np.float64) + 3).astype(np.int64)
        b = np.rint(2 * np.asarray(q, dtype=np.float64) + 3).astype(np.int64)
        if not (np.allclose(a, 2 * np.asarray(p) + 3) and np.allclose(b, 2 * np.asarray(q) + 3)):
            raise ValueError("visible() takes integer or half-integer coordinates")
        h, w = self.shape
        for pt in (a, b):
            if not (2 <= pt[0] <= 2 * h + 2 and 2 <= pt[1] <= 2 * w + 2):
                raise ValueError(f"point {(pt - 3) / 2} is outside the {h}x{w} map")
        return bool(self._los(a[None], b[None])[0])

    def _los1(self, u0: int, v0: int, u1: int, v1: int) -> bool:
        """:meth:`_los` for one segment, in plain Python (faster for a few segments)."""
        du, dv = u1 - u0, v1 - v0
        t = self._py
        if du == 0 or dv == 0:
            if du == 0 and dv == 0:
                return True
            if du == 0:
                line, lo, hi = u0, min(v0, v1), max(v0, v1)
                cells, walls, bads = t["_rowcum"], t["_hwcum"], t["_badh"]
                cs = ws = self._wp + 1
                bs = self._wp + 2
            else:
                line, lo, hi = v0, min(u0, u1), max(u0, u1)
                cells, walls, bads = t["_colcum"], t["_vwcum"], t["_badv"]
                cs = ws = self._hp + 1
                bs = self._hp + 2
            r = line // 2
            c0, c1 = lo // 2, (hi + 1) // 2
            if line % 2:
                return cells[r * cs + c1] == cells[r * cs + c0]
            if walls[r * ws + c1] != walls[r * ws + c0]:
                return False
            g0 = c0 + 1
            return c1 <= g0 or bads[r * bs + c1] == bads[r * bs + g0]
        if abs(dv) >= abs(du):
            cellcum, cstride, bad, bstride = t["_colcum"], self._hp + 1, t["_bad"], self._wp + 1
        else:
            u0, v0, u1, v1, du, dv = v0, u0, v1, u1, dv, du
            cellcum, cstride, bad, bstride = t["_rowcum"], self._wp + 1, t["_badT"], self._hp + 1
        if dv < 0:
            u0, v0, u1, v1, du, dv = u1, v1, u0, v0, -du, -dv
        den = 2 * dv
        n0 = u0 * dv
        c = v0 // 2
        cend = (v1 + 1) // 2
        while c < cend:
            left = 2 * c
            if left > v0:
                na = n0 + (left - v0) * du
                if na % den == 0 and bad[(na // den) * bstride + c]:
                    return False
            else:
                na = n0
            nb = n0 + ((left + 2 if left + 2 < v1 else v1) - v0) * du
            if na < nb:
                r_min, r_max = na // den, -((-nb) // den) - 1
            else:
                r_min, r_max = nb // den, -((-na) // den) - 1
            b = c * cstride
            if cellcum[b + r_max + 1] != cellcum[b + r_min]:
                return False
            c += 1
        return True

    def _lattice_l1(self, gu: int, gv: int) -> np.ndarray:
        """L1 geodesic distance (in cells) from lattice point (gu, gv) to every point of the
        doubled lattice, in the free space relaxed to the union of the free closed squares:
        (2Hp+1, 2Wp+1) float64, inf where unreachable.

        A polygonal path in that union splits into pieces inside single closed free squares;
        each piece is at least as long in L1 as the L-shaped path between its ends, and the
        choice of the split points separates into x and y problems whose optimum lies on
        the coordinates of the grid lines and the end points. So the L1 length of every
        legal polyline between lattice points is at least the shortest 4-neighbour path on
        the lattice through points of free closed squares (half-cell steps).
        """
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        occp = self._occp
        hp, wp = self._hp, self._wp
        n, m = 2 * hp + 1, 2 * wp + 1
        if self._lattice is None:
            ok = np.zeros((n, m), dtype=bool)  # lattice point lies in a free closed square
            ok[1::2, 1::2] = ~occp
            ok[2:-1:2, 1::2] = ~(occp[:-1] & occp[1:])
            ok[1::2, 2:-1:2] = ~(occp[:, :-1] & occp[:, 1:])
            ok[2:-1:2, 2:-1:2] = ~(occp[:-1, :-1] & occp[:-1, 1:] & occp[1:, :-1] & occp[1:, 1:])
            idx = np.arange(n * m).reshape(n, m)
            east, south = ok[:, :-1] & ok[:, 1:], ok[:-1] & ok[1:]
            src = np.concatenate([idx[:, :-1][east], idx[:-1][south]])
            dst = np.concatenate([idx[:, 1:][east], idx[1:][south]])
            ones = np.ones(2 * len(src), dtype=np.int8)
            self._lattice = csr_matrix((ones, (np.concatenate([src, dst]),
                                               np.concatenate([dst, src]))), shape=(n * m,) * 2)
        d = dijkstra(self._lattice, indices=gu * m + gv, unweighted=True)
        return d.reshape(n, m) / 2.0

    # ------------------------------------------------------------------ visibility sweep

    def _sweep(self, y0: float, x0: float, sgn: int, cones: list, tmax: float, out: list,
               goal, goal_test) -> bool:
        """Candidate corners seen from (y0, x0) (padded unit coordinates) in one half-plane.

        ``sgn`` +1: rows below (increasing row), -1: above. Directions are slopes
        ``dx / t`` with t = |dy| > 0, limited to the intervals ``cones`` [(lo, hi), ...]. Appends candidate corner
        ids (a superset of the visible ones) to ``out``. ``goal`` is ``(yg, xg)`` or None;
        when the sweep reaches the goal's row with the goal's direction still open it calls
        ``goal_test()`` and stops (returning True) if that returns True.
        """
        hp, wp = self._hp, self._wp
        next_blk, prev_blk = self._next_blk, self._prev_blk
        row_cols, row_base = self._row_cols, self._row_base
        occ_rows = self._occ_rows
        floor, ceil, inf = math.floor, math.ceil, math.inf
        eps = _EPS
        if sgn > 0:
            r = floor(y0 + 0.5)
        else:
            r = ceil(y0 - 0.5)
        gr = None
        if goal is not None and (goal[0] - y0) * sgn > 0:
            gr = int(round(goal[0]))
            gs = (goal[1] - x0) / abs(goal[0] - y0)
        while cones and 0 <= r < hp:
            if sgn > 0:
                ta, tb, far = r - 0.5 - y0, r + 0.5 - y0, r + 1
            else:
                ta, tb, far = y0 - r - 0.5, y0 - r + 0.5, r
            if ta < 0:
                ta = 0.0
            if ta > tmax:
                break
            if r == gr:
                m = eps * (1 + abs(gs))
                for lo, hi in cones:
                    if lo - m <= gs <= hi + m:
                        if goal_test():
                            return True
                        break
            nb = next_blk[r]
            occ_row = occ_rows[r]
            new = []
            if ta == 0.0:
                # first row: only the nearest blocked cells on either side matter
                cl = prev_blk[r][min(max(floor(x0), 0), wp - 1)]
                cr = next_blk[r][min(max(ceil(x0), 0), wp - 1)]
                xr_l = cl + 0.5 - x0  # right edge of the nearest blocked cell on the left
                xl_r = cr - 0.5 - x0  # left edge of the nearest blocked cell on the right
                if xr_l > 0 or xl_r < 0 or (xr_l == 0 and xl_r == 0):
                    # the point's own cell is blocked (never for a node), or only the ray
                    # along the wall below / above a corner is left: nothing to see
                    cones = []
                    break
                blo = xr_l / tb if cl >= 0 else -inf
                bhi = xl_r / tb if cr < wp else inf
                if blo != -inf:
                    blo -= eps * (1 + abs(blo))
                if bhi != inf:
                    bhi += eps * (1 + abs(bhi))
                for lo, hi in cones:
                    lo2, hi2 = max(lo, blo), min(hi, bhi)
                    if lo2 <= hi2:
                        new.append((lo2, hi2))
            else:
                for lo, hi in cones:
                    xmin = lo * ta if lo * tb > lo * ta else lo * tb
                    xmax = hi * tb if hi * tb > hi * ta else hi * ta
                    cmin = x0 + xmin + 0.5
                    cmin = 0 if cmin < 0 else int(cmin)
                    cmax = x0 + xmax + 0.5
                    cmax = wp - 1 if cmax >= wp - 1 else int(cmax)
                    cur = lo
                    c = nb[cmin] if cmin < wp else wp
                    while c <= cmax:
                        xl = c - 0.5 - x0
                        xr = xl + 1.0
                        a = xl / ta if xl < 0 else xl / tb
                        b = xr / ta if xr > 0 else xr / tb
                        a += eps * (1 + abs(a))
                        if xr == 0 and occ_row[c + 1]:
                            b = eps  # a wall along the vertical ray: no gap at slope 0
                        else:
                            b -= eps * (1 + abs(b))
                        if a >= cur:
                            if a >= hi:
                                break
                            new.append((cur, a))
                        if b > cur:
                            cur = b
                            if cur > hi:
                                break
                        c = nb[c + 1] if c + 1 < wp else wp
                    if cur <= hi:
                        new.append((cur, hi))
            cones = new
            # corners on the far grid line of this row
            if far <= hp and tb <= tmax and cones:
                cols = row_cols[far]
                if cols:
                    base = row_base[far]
                    for lo, hi in cones:
                        xa = lo * tb
                        xb = hi * tb
                        ca = x0 + xa + 0.5 - eps * (1 + abs(xa))
                        cb = x0 + xb + 0.5 + eps * (1 + abs(xb))
                        i0 = bisect_left(cols, ceil(ca)) if ca > 0 else 0
                        i1 = bisect_right(cols, floor(cb)) if cb < wp + 1 else len(cols)
                        if i1 > i0:
                            out.extend(range(base + i0, base + i1))
            r += sgn
        return False

    def _line_scan(self, rc: int, cc: int, axis: int, step: int, out: list) -> None:
        """Candidate corners on corner ``(rc, cc)``'s own grid lines, up to the first wall
        edge or bad grid point: ``axis`` 1 along its row line (``step`` +-1 in column),
        0 along its column line (``step`` +-1 in row)."""
        if axis == 1:
            line, pos, (nwall, pwall, nbad, pbad) = rc, cc, self._hline
            keys, ids, base = self._row_cols[rc], None, self._row_base[rc]
        else:
            line, pos, (nwall, pwall, nbad, pbad) = cc, rc, self._vline
            keys, ids, base = self._col_rows[cc], self._col_ids[cc], 0
        if step > 0:  # edges over pos, pos+1, ...; grid points pos+1, ...
            last = min(int(nwall[line, pos]), int(nbad[line, pos + 1]))
            i0, i1 = bisect_right(keys, pos), bisect_right(keys, last)
        else:  # edges over pos-1, pos-2, ...; grid points pos-1, ...
            first = max(int(pwall[line, pos - 1]) + 1, int(pbad[line, pos - 1]))
            i0, i1 = bisect_left(keys, first), bisect_left(keys, pos)
        if i1 > i0:
            out.extend(range(base + i0, base + i1) if ids is None else ids[i0:i1])

    # ------------------------------------------------------------------ search

    def _search(self, start: tuple[int, int], goal: tuple[int, int]):
        """A* over corners; returns (node chain of doubled points (P, 2), length) or None.

        Heuristic: the Euclidean distance to the goal; after ``_SWITCH_AFTER`` expansions
        also the L1 geodesic distance over sqrt(2) (:meth:`_lattice_l1`; L1 length <=
        sqrt(2) times Euclidean length for every path, so it is admissible, and consistent
        since the lattice distance obeys the triangle inequality and is at most the L1
        length of any visible segment). Both are consistent, so is their maximum, and
        closed nodes keep their exact g when the open list is re-keyed.
        """
        k = self.n_corners
        s_id, g_id = k, k + 1
        su, sv = 2 * start[0] + 3, 2 * start[1] + 3
        gu, gv = 2 * goal[0] + 3, 2 * goal[1] + 3
        sp = np.array([su, sv], dtype=np.int64)
        gp = np.array([gu, gv], dtype=np.int64)
        self.last_expanded = 0
        if start == goal:
            return sp[None], 0.0
        if self._los1(su, sv, gu, gv):
            return np.stack([sp, gp]), math.hypot(gu - su, gv - sv) / 2.0
        pu, pv = self._pu + [su, gu], self._pv + [sv, gv]  # node positions (doubled)
        ddu, ddv = self._du, self._dv  # corner blocked directions
        cpos, cdir = self._cpos, self._cdir
        los1, sweep, line_scan = self._los1, self._sweep, self._line_scan
        gyx = ((gu - 1) / 2.0, (gv - 1) / 2.0)  # goal in padded unit coordinates
        gval = np.full(k + 2, np.inf)
        parent = [-1] * (k + 2)
        closed = np.zeros(k + 2, dtype=bool)
        gval[s_id] = 0.0
        hl = None  # L1 lower bound per node, once switched on
        heap = [(math.hypot(gu - su, gv - sv) / 2.0, -0.0, s_id)]
        push, pop, hypot, sqrt = heapq.heappush, heapq.heappop, math.hypot, math.sqrt
        upper = math.inf
        slack = 1 + 1e-12
        expanded = 0
        while heap:
            f, ng, c = pop(heap)
            if closed[c]:
                continue
            closed[c] = True
            if c == g_id:
                break
            expanded += 1
            if expanded == _SWITCH_AFTER:
                d = self._lattice_l1(gu, gv)
                hl_arr = np.concatenate([d[self._cpos[:, 0], self._cpos[:, 1]],
                                         [d[su, sv], 0.0]]) / math.sqrt(2.0)
                hl = hl_arr.tolist()
                heap = [(max(-e[1] + hl[e[2]], e[0]), e[1], e[2]) for e in heap
                        if not closed[e[2]]]
                heapq.heapify(heap)
            gc = -ng
            cu, cv = pu[c], pv[c]
            if c == s_id:
                wedge = None
            else:
                p = parent[c]
                a0, a1 = cu - pu[p], cv - pv[p]
                d0, d1 = ddu[c], ddv[c]
                x = a0 * d1 - a1 * d0
                if x == 0:
                    continue  # arrived along the blocked square's diagonal: no taut bend
                sig = 1 if x > 0 else -1
                wedge = (a0, a1, d0, d1, sig)
            y0, x0 = (cu - 1) / 2.0, (cv - 1) / 2.0
            tmax = upper - gc

            def goal_test(cu=cu, cv=cv):
                return los1(cu, cv, gu, gv)

            cand: list[int] = []
            stopped = False
            gap = 0.0 if c == s_id else self._slope_gap
            for sgn in (1, -1):
                lohi = _half_plane_slopes(wedge, sgn)
                if lohi is None:
                    continue
                lo, hi = lohi
                if gap and lo < gap and hi > -gap:
                    # the ray straight along a corner's column line goes to a line scan
                    cones = [iv for iv in ((lo, -gap), (gap, hi)) if iv[0] <= iv[1]]
                else:
                    cones = [lohi]
                if cones and sweep(y0, x0, sgn, cones, tmax, cand, gyx, goal_test):
                    stopped = True
                    break
            if stopped:  # the goal is visible: it is the only successor worth having
                if wedge is None or _taut(wedge, gu - cu, gv - cv):
                    gn = gc + hypot(gu - cu, gv - cv) / 2.0
                    if gn < gval[g_id]:
                        gval[g_id] = gn
                        parent[g_id] = c
                        upper = gn
                        push(heap, (gn, -gn, g_id))
                continue
            if c != s_id:
                rc, cc = cu // 2, cv // 2
                for axis, step in ((1, 1), (1, -1), (0, 1), (0, -1)):
                    if _in_closed_wedge(wedge, step * (1 - axis), step * axis):
                        line_scan(rc, cc, axis, step, cand)
            if not cand:
                continue
            if len(cand) <= _SCALAR_BATCH:
                for q in set(cand):
                    if closed[q]:
                        continue
                    w0, w1 = pu[q] - cu, pv[q] - cv
                    if not (w0 * ddu[q] < 0 or w1 * ddv[q] < 0):
                        continue  # not tangent at q
                    if wedge is not None and not _taut(wedge, w0, w1):
                        continue
                    gn = gc + sqrt(w0 * w0 + w1 * w1) / 2.0
                    if gn >= gval[q]:
                        continue
                    hq = hypot(pu[q] - gu, pv[q] - gv) / 2.0
                    if hl is not None and hl[q] > hq:
                        hq = hl[q]
                    if gn + hq > upper * slack or not los1(cu, cv, pu[q], pv[q]):
                        continue
                    gval[q] = gn
                    parent[q] = c
                    push(heap, (gn + hq, -gn, q))
                continue
            q = np.unique(np.asarray(cand, dtype=np.int64))
            q = q[~closed[q]]
            w = cpos[q] - (cu, cv)  # (n, 2)
            dq = cdir[q]
            keep = (w[:, 0] * dq[:, 0] < 0) | (w[:, 1] * dq[:, 1] < 0)  # tangent at q
            if wedge is not None:
                a0, a1, d0, d1, sig = wedge
                keep &= (sig * (a0 * w[:, 1] - a1 * w[:, 0]) > 0) & \
                        (sig * (w[:, 0] * d1 - w[:, 1] * d0) > 0)  # taut at c
            q, w = q[keep], w[keep]
            gn = gc + np.sqrt((w[:, 0] ** 2 + w[:, 1] ** 2).astype(np.float64)) / 2.0
            hq = np.sqrt(((cpos[q] - (gu, gv)) ** 2).sum(axis=1).astype(np.float64)) / 2.0
            if hl is not None:
                hq = np.maximum(hq, hl_arr[q])
            keep = (gn < gval[q]) & (gn + hq <= upper * slack)
            q, gn, hq = q[keep], gn[keep], hq[keep]
            if len(q) == 0:
                continue
            vis = self._los(np.broadcast_to(np.array([cu, cv], dtype=np.int64), (len(q), 2)),
                            cpos[q])
            q, gn, hq = q[vis], gn[vis], hq[vis]
            gval[q] = gn
            for qi, gi, hi in zip(q.tolist(), gn.tolist(), hq.tolist()):
                parent[qi] = c
                push(heap, (gi + hi, -gi, qi))
        self.last_expanded = expanded
        if not closed[g_id]:
            return None
        chain = [g_id]
        while chain[-1] != s_id:
            chain.append(parent[chain[-1]])
        pts = np.array([(pu[n], pv[n]) for n in chain[::-1]], dtype=np.int64)
        return pts, float(gval[g_id])

    def path(self, start, goal) -> AnyAngleResult | None:
        """Exact shortest any-angle path from cell ``start`` to cell ``goal`` (``(row, col)``).

        None if either is an obstacle or the goal is unreachable; ValueError off the map.
        """
        s = _check_cell(self.shape, start, "start")
        g = _check_cell(self.shape, goal, "goal")
        if self.occ[s] or self.occ[g] or self._labels[s] != self._labels[g]:
            return None
        res = self._search(s, g)
        if res is None:  # cannot happen for one component; kept as a guard
            return None
        pts, length = res
        return AnyAngleResult(points=(pts.astype(np.float64) - 3.0) / 2.0, length=length)

    def length(self, start, goal) -> float:
        """Length of :meth:`path`, NaN when there is none."""
        res = self.path(start, goal)
        return math.nan if res is None else res.length


def _first_blockers(walls: np.ndarray, bad: np.ndarray):
    """Per grid line: next / previous wall edge and bad grid point, as (L, n) int arrays.

    walls (L, n): edge over cell n on line L is a wall; bad (L, n+1): grid point n on line
    L is no passage. Returns (next_wall, prev_wall, next_bad, prev_bad): the first index
    >= k (n or n+1 if none) and the last index <= k (-1 if none) at each k.
    """
    def nxt(a):
        idx = np.where(a, np.arange(a.shape[1]), a.shape[1])
        return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]

    def prv(a):
        return np.maximum.accumulate(np.where(a, np.arange(a.shape[1]), -1), axis=1)

    return nxt(walls), prv(walls), nxt(bad), prv(bad)


def _taut(wedge, w0: int, w1: int) -> bool:
    a0, a1, d0, d1, sig = wedge
    return sig * (a0 * w1 - a1 * w0) > 0 and sig * (w0 * d1 - w1 * d0) > 0


def _in_closed_wedge(wedge, w0: int, w1: int) -> bool:
    a0, a1, d0, d1, sig = wedge
    return sig * (a0 * w1 - a1 * w0) >= 0 and sig * (w0 * d1 - w1 * d0) >= 0


def _half_plane_slopes(wedge, sgn: int):
    """Slope interval ``[lo, hi]`` (slope = dx / |dy|) of the closed taut wedge within the
    half-plane ``sgn * dy > 0``, or None if they do not meet in more than the boundary line.

    ``wedge`` is ``(a0, a1, d0, d1, sig)``: the directions ``w`` with
    ``sig * cross(a, w) > 0`` and ``sig * cross(w, d) > 0`` (None = all directions).
    """
    inf = math.inf
    if wedge is None:
        return -inf, inf
    a0, a1, d0, d1, _ = wedge
    slopes = []
    for w0, w1 in ((a0, a1), (d0, d1), (0, 1), (0, -1)):
        if not _in_closed_wedge(wedge, w0, w1) or sgn * w0 < 0:
            continue
        slopes.append(w1 / (sgn * w0) if w0 != 0 else (inf if w1 > 0 else -inf))
    if not slopes:
        return None
    lo, hi = min(slopes), max(slopes)
    if lo == hi and math.isinf(lo):
        return None
    return lo, hi


def anyangle_path(occ: np.ndarray, start, goal) -> AnyAngleResult | None:
    """Exact shortest any-angle path on ``occ`` (H, W) bool (True = obstacle) from cell
    ``start`` to cell ``goal`` (``(row, col)``), or None if there is none.

    See the module docstring for the rules and the method. For many queries on one map use
    :class:`AnyAngleMap` or :func:`anyangle_lengths`, which do the per-map work once.
    """
    return AnyAngleMap(occ).path(start, goal)


def anyangle_lengths(occ: np.ndarray, starts, goals) -> np.ndarray:
    """Exact any-angle lengths for a batch on one map. starts, goals (N, 2) cells -> (N,)
    float64, NaN where there is no path."""
    m = AnyAngleMap(occ)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)
    goals = np.asarray(goals, dtype=np.int64).reshape(-1, 2)
    if starts.shape != goals.shape:
        raise ValueError(f"starts {starts.shape} and goals {goals.shape} differ in shape")
    return np.array([m.length(tuple(s), tuple(g)) for s, g in zip(starts, goals)],
                    dtype=np.float64)
