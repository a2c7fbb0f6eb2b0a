"""Initial trajectories and arc-length resampling. All tensors are (N, T, 2), row/column.

Initialisations are a registry (``INITS``), one signature:
``init(start (B,2), goal (B,2), n_starts, n_waypoints, occ (H, W) obstacle probability,
generator, cfg) -> (B, K, T, 2)`` (a cell is a wall at probability ≥ 0.5). ``SEEDED`` names
the inits that return complete cell routes (start to goal, legal moves): the planner refines
those at their own length and falls back to the route where refinement breaks validity; the
others are guesses that coarse-to-fine descent shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def resample(wp: torch.Tensor, n: int, counts: torch.Tensor | None = None) -> torch.Tensor:
    """Resample polylines evenly by arc length. (N, T, 2) -> (N, n, 2).

    With ``counts`` (N,), polyline k gets ``counts[k]`` evenly spaced points and is then
    padded with copies of its last point up to ``n`` (a batch of different lengths).
    """
    seg = torch.diff(wp, dim=1).norm(dim=-1)  # (N, T-1)
    cum = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(1)], dim=1)  # (N, T)
    total = cum[:, -1:].clamp_min(1e-9)
    steps = torch.arange(n, device=wp.device, dtype=wp.dtype)[None]  # (1, n)
    denom = (counts[:, None].to(wp.dtype) - 1) if counts is not None else torch.tensor(n - 1.0)
    target = (steps / denom.clamp_min(1)).clamp(max=1.0) * total  # (N, n)
    idx = torch.searchsorted(cum.contiguous(), target.contiguous()).clamp(1, wp.shape[1] - 1)
    c0 = cum.gather(1, idx - 1)
    c1 = cum.gather(1, idx)
    f = ((target - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0, 1)[..., None]  # (N, n, 1)
    p0 = wp.gather(1, (idx - 1)[..., None].expand(-1, -1, 2))
    p1 = wp.gather(1, idx[..., None].expand(-1, -1, 2))
    return p0 + f * (p1 - p0)


def path_length(wp: torch.Tensor) -> torch.Tensor:
    """Polyline length. (N, T, 2) -> (N,)."""
    return torch.diff(wp, dim=1).norm(dim=-1).sum(-1)


def bow_offsets(n_starts: int) -> list[float]:
    """Sideways bow amplitudes (fraction of the start-goal distance): 0, ±a1, ±a2, ..."""
    amps = [0.0]
    k = 1
    while len(amps) < n_starts:
        a = 0.04 * k * k
        amps += [a, -a]
        k += 1
    return amps[:n_starts]


def init_line(start, goal, n_starts, n_waypoints, occ, gen, cfg=None) -> torch.Tensor:
    """Straight line plus sideways-bowed arcs (half-sine bumps) as multi-starts. -> (B, K, T, 2)."""
    t = torch.linspace(0, 1, n_waypoints, dtype=start.dtype, device=start.device)  # (T,)
    d = goal - start  # (B, 2)
    normal = torch.stack([-d[:, 1], d[:, 0]], dim=1)  # (B, 2), length = |d|
    amps = torch.tensor(bow_offsets(n_starts), dtype=start.dtype, device=start.device)  # (K,)
    base = start[:, None, None, :] + t[None, None, :, None] * d[:, None, None, :]  # (B, 1, T, 2)
    bump = torch.sin(math.pi * t)[None, None, :, None] * amps[None, :, None, None]  # (1, K, T, 1)
    return base + bump * normal[:, None, None, :]  # (B, K, T, 2)


def init_random(start, goal, n_starts, n_waypoints, occ, gen, cfg=None) -> torch.Tensor:
    """The note's initialisation: x_t ~ U(0, x_max), y_t ~ U(0, y_max). -> (B, K, T, 2)."""
    b = start.shape[0]
    hi = torch.tensor([occ.shape[0] - 1.0, occ.shape[1] - 1.0], dtype=start.dtype)
    u = torch.rand(b, n_starts, n_waypoints, 2, generator=gen, dtype=start.dtype)
    return (u * hi).to(start.device)


def routes_tensor(routes: list, dtype=torch.float32, device=None) -> torch.Tensor:
    """Cell routes (each (L, 2) int) as one tensor, padded with each route's last cell.

    -> (B, 1, Lmax, 2); a one-cell route is doubled so every route is a polyline."""
    lmax = max(2, max(len(r) for r in routes))
    out = torch.empty(len(routes), 1, lmax, 2, dtype=dtype)
    for b, r in enumerate(routes):
        c = torch.as_tensor(np.asarray(r), dtype=dtype).reshape(-1, 2)
        out[b, 0, : len(c)] = c
        out[b, 0, len(c):] = c[-1]
    return out.to(device)


def init_astar(start, goal, n_starts, n_waypoints, occ, gen, cfg=None) -> torch.Tensor:
    """The A* cell path (8-connected, octile-optimal) as a polyline: one start per problem.

    Used by the ``gradient-astar-init`` planner only; the pure gradient planner never searches.
    Raises ValueError if a goal is unreachable. -> (B, 1, L, 2).
    """
    from descentlab.planning.search import astar

    routes = []
    for s, g in zip(start.tolist(), goal.tolist()):
        res = astar(np.asarray(occ) >= 0.5, (round(s[0]), round(s[1])), (round(g[0]), round(g[1])))
        if res is None:
            raise ValueError(f"goal {tuple(g)} is unreachable from {tuple(s)}")
        routes.append(res.cells)
    return routes_tensor(routes, start.dtype, start.device)


def potential_routes(occ: np.ndarray, starts, goals, cfg=None, device="cpu") -> list:
    """The potential's routes (potential.Route) for cell problems on obstacle probabilities
    occ (H, W): walls at ≥ 0.5; kind, screening, solver and the state cost ``risk`` × the
    probability of each free cell from ``cfg`` (a PlannerConfig)."""
    from descentlab.planning.potential import graph_for, node_cost, route_potential

    occ = np.asarray(occ)
    graph = graph_for(occ >= 0.5)
    if cfg is None:
        return route_potential(graph, starts, goals, device=device)[0]
    return route_potential(graph, starts, goals, kind=cfg.potential, screening=cfg.screening,
                           solver=cfg.solver, device=device,
                           cost=node_cost(graph, occ, cfg.risk))[0]


def init_potential(start, goal, n_starts, n_waypoints, occ, gen, cfg=None) -> torch.Tensor:
    """Steepest ascent on the global potential (potential.py): a complete route, no search.

    The potential's kind, screening, solver and state cost come from ``cfg`` (a
    PlannerConfig). Raises ValueError if a goal is unreachable. -> (B, 1, L, 2).
    """
    cells = lambda x: [(round(a), round(b)) for a, b in x.tolist()]  # noqa: E731
    routes = potential_routes(occ, cells(start), cells(goal), cfg, start.device)
    for r, g in zip(routes, cells(goal)):
        if not r.reached:
            raise ValueError(f"goal {g} is unreachable from {tuple(r.cells[0])}: {r.reason}")
    return routes_tensor([r.cells for r in routes], start.dtype, start.device)


INITS: dict[str, Callable[..., torch.Tensor]] = {
    "potential": init_potential,
    "line": init_line,
    "random": init_random,
    "astar": init_astar,
}
SEEDED = frozenset({"potential", "astar"})
