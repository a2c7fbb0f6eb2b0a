"""A global potential with no local minima, and steepest descent on it to a cell route.

Local descent from a straight line cannot change homotopy class (a wall with one door, a
maze). The cure from the potential-field literature is a potential computed globally as the
minimiser of a convex energy whose only extremum is the goal (Connolly, Burns & Weiss,
"Path planning using Laplace's equation", ICRA 1990; Connolly & Grupen 1993; LaValle,
*Planning Algorithms* §8.4.4). Both energies here live on the free cells of the map with the
4-neighbour graph Laplacian ``L`` (unit conductance between free side-neighbours, no flux
through obstacle faces or the map border), and both are quadratic, so their minimiser is
one sparse linear solve — no search, no priority queue, no node expansion:

* ``screened`` (default) — the screened Poisson energy with a unit source at the goal,

      E(z) = ½ Σ_v z_v² + (t/2) Σ_{u~v} (z_u − z_v)² − z_g,   (I + t L) z = e_g,

  strictly convex for any screening length² ``t > 0``. At every free cell v ≠ g,
  ``(1 + t·deg v) z_v = t Σ_{u~v} z_u``, so z_v is *strictly* below its largest
  side-neighbour (by a relative margin ≥ 1/(4t)): steepest ascent on z from any cell of the
  goal's component reaches the goal (the discrete maximum principle). z is the desirability
  function of Todorov's linearly solvable shortest-path problem (PNAS 2009) and the first
  step of the heat method (Crane, Weischedel & Wardetzky, ACM TOG 2013): by Varadhan's
  formula −√t·log z tends to the geodesic distance as t → 0, so unlike the harmonic
  potential its ascent runs straight in open space and is pulled towards the shortest way
  round obstacles rather than the widest. One solve per *goal* serves every start and every
  replan towards that goal. z decays like exp(−d/√t); where it would underflow at the start
  (long mazes), the solve is repeated with t × 4 (the ladder :data:`SCREENING_LADDER`), and
  the harmonic potential is the limit t → ∞.
  A state cost ``q ≥ 0`` per free cell (``cost``; the planner's ``risk`` × the cell's
  obstacle probability) makes the energy ½ Σ (1 + q_v) z_v² + …, i.e.
  ``(diag(1 + q) + tL) z = e_g``: Todorov's linearly solvable problem with a state cost, whose
  routes prefer cells believed free (on a navigator's estimate: seen-free over unseen). The
  operator stays an M-matrix and ``(1 + q_v + t·deg v) z_v = t Σ z_u`` keeps every z_v below
  its largest side-neighbour, so the ascent is complete for any q.
* ``harmonic`` — Laplace's equation with φ(start) = 1-current source and φ(goal) = sink:
  ``L φ = e_s − e_g`` on the goal's component, grounded at one cell per component by both
  solvers (the injections sum to zero, so the grounded solution satisfies every equation;
  ungrounded, a component without a source is a singular block). Minimiser of
  the Dirichlet energy ½ Σ (φ_u − φ_v)² − φ_s + φ_g. Every cell but the two ends is the mean
  of its side-neighbours, so a cell entered from a higher neighbour has a strictly lower one
  (Connolly et al. 1990). Harmonic routes follow current lines and prefer wide passages.

The operator and its factorisation are built once per map and cached per ``t``
(:class:`GridGraph`), shared by every problem and replan on that map. Solvers
(:data:`SOLVERS`): ``direct`` (SciPy's sparse LU, symmetric ordering — for the M-matrix
``I + tL`` forward and back substitution add terms of one sign only, so tiny values of z keep
their relative accuracy), ``cg`` (batched conjugate gradients in torch, Jacobi-preconditioned,
any device, warm-startable), ``auto`` (direct on CPU, cg on CUDA).

Unreachable goals: the operator is block-diagonal by connected component, so the potential is
exactly zero off the goal's component (the harmonic one by its grounding); the component labels
of the operator's graph tell an unreachable start from an underflow, and
:func:`route_potential` reports it (``reached`` False, ``reason`` "unreachable").

Routes: steepest ascent (of log z, or of −φ) over the 8 moves without corner cutting, the
gain measured per unit step length (1 or √2). 8-move connectivity without corner cutting
equals 4-connectivity, so the ascent's guarantee carries over.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla
import torch

from descentlab.planning.cache import map_key, per_map

SQRT2 = math.sqrt(2.0)
# (di, dj) of the 8 moves; the first four are the side moves.
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)])
MOVE_LENGTH = np.array([1.0] * 4 + [SQRT2] * 4)
MOVE_INDEX = {(int(di), int(dj)): k for k, (di, dj) in enumerate(MOVES)}
SCREENING_LADDER = 4.0  # factor by which t grows where z underflows at a start
TINY = 1e-280  # below this a screened value is treated as underflowed (direct solver)


class GridGraph:
    """The free cells of a map as a graph, built once per map (and reused).

    ``index`` (H, W) int: node of each free cell, -1 for obstacles; ``cells`` (n, 2) the cell
    of each node; ``moves`` (n, 8) the node reached by each of the 8 moves (``n`` = illegal:
    obstacle, off the map, or a diagonal that cuts a corner); ``laplacian`` (n, n) CSR;
    ``component`` (n,) connected-component label. Factorisations are cached per screening
    ``t`` (:meth:`screened_solver`) and for the grounded Laplacian (:meth:`harmonic_solver`).
    """

    def __init__(self, occ: np.ndarray):
        occ = np.asarray(occ, dtype=bool)
        h, w = occ.shape
        self.shape = (h, w)
        free = ~occ
        self.index = np.full((h, w), -1, dtype=np.int64)
        self.n = int(free.sum())
        self.index[free] = np.arange(self.n)
        self.cells = np.argwhere(free)  # (n, 2), row-major = node order
        padded = np.full((h + 2, w + 2), self.n, dtype=np.int64)  # off-map -> illegal
        padded[1:-1, 1:-1] = np.where(free, self.index, self.n)
        # the node reached by each move, read off shifted views of the padded index
        shifted = [padded[1 + di:h + 1 + di, 1 + dj:w + 1 + dj][free] for di, dj in MOVES]
        moves = np.stack(shifted, 1)  # (n, 8)
        legal = moves < self.n
        for k in range(4, 8):  # a diagonal needs both side cells free (no corner cutting)
            di, dj = MOVES[k]
            side = legal[:, MOVE_INDEX[(di, 0)]] & legal[:, MOVE_INDEX[(0, dj)]]
            moves[:, k] = np.where(side, moves[:, k], self.n)
        self.moves = moves
        # CSR rows in node (row-major) order: up, left, right, down are already sorted
        side4 = moves[:, [0, 2, 3, 1]]  # (n, 4)
        keep = side4 < self.n
        self.degree = keep.sum(1).astype(np.float64)  # (n,)
        indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
        adj = sp.csr_matrix((np.ones(int(keep.sum())), side4[keep], indptr),
                            shape=(self.n, self.n))
        self.adjacency = adj
        self.laplacian = (sp.diags(self.degree) - adj).tocsr()
        _, self.component = csgraph.connected_components(adj, directed=False)
        # one ground node per component (its first): φ = 0 there makes L definite
        self.ground = np.unique(self.component, return_index=True)[1]
        self._screened: dict[tuple, Callable] = {}
        self._harmonic: Callable | None = None
        self._torch: dict = {}

    # ------------------------------------------------------------------ lookups
    def node(self, cell) -> int:
        """Node of a free cell (row, col); -1 for an obstacle."""
        return int(self.index[int(cell[0]), int(cell[1])])

    def connected(self, a: int, b: int) -> bool:
        return a >= 0 and b >= 0 and self.component[a] == self.component[b]

    # ------------------------------------------------------------------ factorisations
    def screened_operator(self, t: float, cost: np.ndarray | None = None) -> sp.csr_matrix:
        """diag(1 + cost) + tL (cost (n,) ≥ 0 per node, or None for 0), CSR."""
        diag = sp.identity(self.n) if cost is None else sp.diags(1.0 + cost)
        return (diag + t * self.laplacian).tocsr()

    def screened_solver(self, t: float,
                        cost: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """Cached solve of (diag(1 + cost) + tL) z = b. b (n, B) -> (n, B)."""
        key = (t, None if cost is None else map_key(cost))
        if key not in self._screened:
            _forget_other_costs(self._screened, key)
            lu = spla.splu(self.screened_operator(t, cost).tocsc(), permc_spec="MMD_AT_PLUS_A",
                           diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            self._screened[key] = lu.solve
        return self._screened[key]

    def harmonic_solver(self) -> Callable[[np.ndarray], np.ndarray]:
        """Cached solve of L φ = b grounded at one node per component (φ = 0 there)."""
        if self._harmonic is None:
            keep = np.ones(self.n, dtype=bool)
            keep[self.ground] = False
            sub = self.laplacian[keep][:, keep].tocsc()
            lu = spla.splu(sub, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                           options={"SymmetricMode": True}) if sub.shape[0] else None

            def solve(b: np.ndarray) -> np.ndarray:
                out = np.zeros_like(b)
                if lu is not None:
                    out[keep] = lu.solve(np.ascontiguousarray(b[keep]))
                return out

            self._harmonic = solve
        return self._harmonic

    def grounded_laplacian(self) -> sp.csr_matrix:
        """L with the row and column of every ground node replaced by the identity: SPD,
        one Dirichlet condition per component. With b = 0 at the ground nodes its solution
        is the grounded one of :meth:`harmonic_solver` (0 on components without a source).
        A component with no grounded node would be a singular block (L·1 = 0 on it), on
        which CG drifts along the constant once converged."""
        keep = np.ones(self.n)
        keep[self.ground] = 0.0
        k = sp.diags(keep)
        return (k @ self.laplacian @ k + sp.diags(1.0 - keep)).tocsr()

    def torch_operator(self, t: float | None, device,
                       cost: np.ndarray | None = None) -> torch.Tensor:
        """The operator diag(1 + cost) + tL, or the grounded L (:meth:`grounded_laplacian`)
        for t None, as a torch sparse CSR matrix (float64)."""
        key = (t, str(device), None if cost is None else map_key(cost))
        if key not in self._torch:
            _forget_other_costs(self._torch, key)
            m = self.grounded_laplacian() if t is None else self.screened_operator(t, cost)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self._torch[key] = torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr), torch.from_numpy(m.indices),
                    torch.from_numpy(m.data), size=m.shape, dtype=torch.float64, device=device)
        return self._torch[key]


def _forget_other_costs(cache: dict, key: tuple) -> None:
    """Before caching ``key`` (…, cost key last): drop the entries with the same leading
    fields and another state cost. Costs follow a navigator's estimate, which changes at
    every replan while its walls (the graph) may not, so one per setting is kept."""
    if key[-1] is None:
        return
    for old in [k for k in cache if k[:-1] == key[:-1] and k[-1] is not None]:
        del cache[old]


def node_cost(graph: GridGraph, prob: np.ndarray, risk: float) -> np.ndarray | None:
    """The state cost ``risk`` × obstacle probability at each node of ``graph``. prob (H, W)
    float in [0, 1] (the map the graph was built from, thresholded). (n,), or None where it
    is 0 everywhere (binary maps, ``risk`` 0)."""
    if risk <= 0:
        return None
    cost = risk * np.clip(np.asarray(prob, dtype=np.float64)[graph.cells[:, 0], graph.cells[:, 1]],
                          0.0, 1.0)
    return cost if cost.any() else None


def graph_for(occ: np.ndarray) -> GridGraph:
    """The :class:`GridGraph` of a map, built once per map content (cache.py), so every
    plan, start and replan on an unchanged map reuses the operator and its factorisations."""
    occ = np.asarray(occ, dtype=bool)
    return per_map("grid-graph", occ, lambda: GridGraph(occ))


# ---------------------------------------------------------------------- solvers
def conjugate_gradient(op: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None = None,
                       tol: float = 1e-12, max_iter: int = 20000) -> tuple[torch.Tensor, int]:
    """Batched Jacobi-preconditioned CG for an SPD sparse ``op``.

    b (n, B) -> x (n, B), iterations used. A column stops (is no longer updated) once its
    residual is below ``tol`` × its ‖b‖: iterating past convergence only amplifies
    rounding. A step whose denominator is not positive (0/0 at an exact solution) is
    skipped. Only matrix products and dot products: no host sync but the one check, every
    25 iterations, whether every column has stopped.
    """
    inv_d = (1.0 / _csr_diagonal(op).clamp_min(1e-300))[:, None]  # (n, 1)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - op @ x
    z = inv_d * r
    p = z.clone()
    rz = (r * z).sum(0)  # (B,)
    limit = tol * b.norm(dim=0)
    active = r.norm(dim=0) > limit  # (B,) columns still iterating
    zero = torch.zeros_like(rz)
    it = 0
    for it in range(1, max_iter + 1):
        ap = op @ p
        pap = (p * ap).sum(0)
        alpha = torch.where(active & (pap > 0), rz / pap, zero)
        x = x + alpha * p
        r = r - alpha * ap
        active = active & (r.norm(dim=0) > limit)
        if it % 25 == 0 and not bool(active.any()):
            break
        z = inv_d * r
        rz_new = (r * z).sum(0)
        p = z + torch.where(active & (rz > 0), rz_new / rz, zero) * p
        rz = rz_new
    return x, it


def _csr_diagonal(op: torch.Tensor) -> torch.Tensor:
    crow, col, val = op.crow_indices(), op.col_indices(), op.values()
    row = torch.repeat_interleave(torch.arange(op.shape[0], device=val.device), crow.diff())
    out = torch.zeros(op.shape[0], dtype=val.dtype, device=val.device)
    on = row == col
    out[row[on]] = val[on]
    return out


@dataclass
class Potential:
    """Potentials of a batch of problems on one map, as values to *ascend*.

    ``values`` (B, n+1) float64: log z (screened) or −φ (harmonic) per node, with a last
    column of −inf for the illegal-move sentinel. ``screening`` (B,) the t used per problem
    (inf for harmonic); ``seconds`` wall time of the solves.
    """

    values: np.ndarray
    screening: np.ndarray
    seconds: float


def _solve_screened(graph: GridGraph, goals: np.ndarray, starts: np.ndarray, t: float,
                    solver: str, device, x0: np.ndarray | None,
                    cost: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """log z per problem, t escalated per problem until z(start) is representable.

    goals, starts (B,) nodes -> (values (B, n), t per problem (B,))."""
    b = len(goals)
    out = np.full((b, graph.n), -np.inf)
    ts = np.full(b, float(t))
    todo = np.arange(b)
    for _ in range(8):
        if len(todo) == 0:
            break
        rhs = np.zeros((graph.n, len(todo)))
        rhs[goals[todo], np.arange(len(todo))] = 1.0
        tt = float(ts[todo[0]])
        if solver == "direct":
            z = graph.screened_solver(tt, cost)(rhs)  # (n, B')
            floor = TINY
        else:
            op = graph.torch_operator(tt, device, cost)
            guess = None if x0 is None else torch.as_tensor(np.exp(x0[todo].T), device=device)
            zt, _ = conjugate_gradient(op, torch.as_tensor(rhs, device=device), guess)
            z = zt.cpu().numpy()
            floor = 1e-9 * 4 * tt  # CG's absolute accuracy, times the ascent margin 1/(4t)
        with np.errstate(divide="ignore"):
            logz = np.log(np.where(z > 0, z, 0.0)).T  # (B', n)
        ok = z[starts[todo], np.arange(len(todo))] > floor
        out[todo[ok]] = logz[ok]
        todo = todo[~ok]
        ts[todo] *= SCREENING_LADDER
    if len(todo):
        raise RuntimeError("screened potential underflows at the start for every t tried")
    return out, ts


def _solve_harmonic(graph: GridGraph, goals: np.ndarray, starts: np.ndarray, solver: str,
                    device, x0) -> np.ndarray:
    b = len(goals)
    rhs = np.zeros((graph.n, b))
    rhs[starts, np.arange(b)] += 1.0
    rhs[goals, np.arange(b)] -= 1.0
    if solver == "direct":
        phi = graph.harmonic_solver()(rhs)
    else:  # the grounded operator: the sources at ground nodes are dropped, as direct does
        rhs[graph.ground] = 0.0
        guess = None if x0 is None else torch.as_tensor(-x0.T, device=device)
        phi_t, _ = conjugate_gradient(graph.torch_operator(None, device),
                                      torch.as_tensor(rhs, device=device), guess, tol=1e-12)
        phi = phi_t.cpu().numpy()
    return -phi.T  # (B, n): ascend −φ


POTENTIALS = ("screened", "harmonic")
SOLVERS = ("auto", "direct", "cg")


def solve_potential(graph: GridGraph, starts: np.ndarray, goals: np.ndarray,
                    kind: str = "screened", screening: float = 16.0, solver: str = "auto",
                    device="cpu", warm: np.ndarray | None = None,
                    cost: np.ndarray | None = None) -> Potential:
    """The potential of each problem (start, goal nodes (B,)) on one map.

    ``warm`` (B, n) previous values (same kind) warm-start the ``cg`` solver (replans).
    ``cost`` (n,) ≥ 0: the screened potential's state cost per node (module docstring).
    """
    if kind not in POTENTIALS:
        raise ValueError(f"unknown potential {kind!r}; choose from {POTENTIALS}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose from {SOLVERS}")
    if solver == "auto":
        solver = "cg" if torch.device(device).type == "cuda" else "direct"
    t0 = time.perf_counter()
    starts = np.asarray(starts, dtype=np.int64)
    goals = np.asarray(goals, dtype=np.int64)
    if kind == "screened":
        vals, ts = _solve_screened(graph, goals, starts, screening, solver, device, warm, cost)
    else:
        if cost is not None and cost.any():
            raise ValueError("a state cost needs the screened potential (harmonic has none)")
        vals, ts = _solve_harmonic(graph, goals, starts, solver, device, warm), \
            np.full(len(goals), np.inf)
    vals = np.concatenate([vals, np.full((len(goals), 1), -np.inf)], 1)  # sentinel column
    return Potential(vals, ts, time.perf_counter() - t0)


@dataclass
class Route:
    """A cell route from start to goal by steepest ascent. ``cells`` (L, 2) int."""

    cells: np.ndarray
    reached: bool
    reason: str | None = None


def ascend(graph: GridGraph, values: np.ndarray, starts: np.ndarray,
           goals: np.ndarray) -> list[Route]:
    """Steepest ascent on ``values`` (B, n+1) from each start node to its goal node.

    All problems step together (one vectorised step per route cell). A route stops at its
    goal, or fails where no move gains (cannot happen on the goal's component in exact
    arithmetic; reported, not hidden).
    """
    b = len(starts)
    cur = np.asarray(starts, dtype=np.int64).copy()
    goals = np.asarray(goals, dtype=np.int64)
    hist = [cur.copy()]  # node of every route per step; finished routes stay put
    length = np.ones(b, dtype=np.int64)  # route cells so far
    reason: list[str | None] = [None] * b
    active = np.flatnonzero(cur != goals)
    for _ in range(graph.n):
        if len(active) == 0:
            break
        nb = graph.moves[cur[active]]  # (A, 8)
        gain = (values[active[:, None], nb] - values[active, cur[active]][:, None]) / MOVE_LENGTH
        k = np.argmax(gain, 1)
        pick = np.arange(len(active))
        stuck = ~(gain[pick, k] > 0)
        for a in active[stuck]:
            reason[a] = "the potential has no ascending move here (numerical plateau)"
        moving = active[~stuck]
        cur[moving] = nb[pick, k][~stuck]
        length[moving] += 1
        hist.append(cur.copy())
        active = moving[cur[moving] != goals[moving]]
    steps = np.stack(hist)  # (S, B)
    out = []
    for i in range(b):
        nodes = steps[: length[i], i]
        out.append(Route(graph.cells[nodes], reason[i] is None and nodes[-1] == goals[i],
                         reason[i]))
    return out


def route_potential(graph: GridGraph, starts, goals, kind: str = "screened",
                    screening: float = 4.0, solver: str = "auto", device="cpu",
                    warm: np.ndarray | None = None, cost: np.ndarray | None = None
                    ) -> tuple[list[Route], Potential | None]:
    """Routes for problems (start, goal cells) on one map: solve, then ascend.
    ``cost`` (n,): the state cost per node (:func:`node_cost`), or None.

    Unreachable problems (different components, or an endpoint on an obstacle) get a Route
    with ``reached`` False and reason "unreachable" and are not solved.
    """
    s_nodes = np.array([graph.node(c) for c in starts], dtype=np.int64)
    g_nodes = np.array([graph.node(c) for c in goals], dtype=np.int64)
    ok = np.array([graph.connected(a, b) for a, b in zip(s_nodes, g_nodes)], dtype=bool)
    routes: list[Route] = [Route(np.asarray([tuple(s)], dtype=np.int64).reshape(-1, 2), False,
                                 "unreachable") for s in starts]
    pot = None
    if ok.any():
        idx = np.flatnonzero(ok)
        pot = solve_potential(graph, s_nodes[idx], g_nodes[idx], kind, screening, solver,
                              device, None if warm is None else warm[idx], cost)
        for i, r in zip(idx, ascend(graph, pot.values, s_nodes[idx], g_nodes[idx])):
            routes[i] = r
    return routes, pot
