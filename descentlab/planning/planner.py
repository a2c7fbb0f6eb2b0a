"""The batched gradient planner (SPEC A): many problems × many starts in one tensor, Adam.

Presets (``PRESETS``):

* ``note`` — the note's own setup: T waypoints drawn U(0, x_max) × U(0, y_max), the four
  loss terms (goal, expected obstacle score with the dense soft maps, smoothness, start
  anchor) at a fixed β, Adam, waypoints rounded to cells at the end (the plan is the cell
  path of the rounded waypoints, its length that path's).
* ``default`` — the complete planner, no search anywhere: the route of steepest ascent on
  the global potential (potential.py: one convex quadratic solve per goal, no local minima)
  fixes the homotopy class; the note's loss then refines it at its own length (smoothness
  pulls it taut and any-angle, the signed-distance hinge keeps clearance, the spacing bound
  keeps it checkable). The result is checked cell by cell and the route itself is returned
  (``fallback``) if refinement ever broke validity.
* ``line`` — local descent alone (``init=line``), the research baseline: endpoints pinned, a
  straight line plus bowed arcs as multi-starts, coarse-to-fine (a coarse stage with wide
  soft maps, then arc-length resampling to dense waypoints), continuation (β annealed wide →
  narrow while the collision weights rise), the clearance hinge beside the expected obstacle
  score, the spacing bound, and kick-and-reoptimise repairs. It cannot change homotopy class.
* ``astar`` — the same refinement seeded with the A* path instead of the potential's route.

Result per problem: continuous waypoints, the 8-connected cell path derived from them
(discretize.py) and whether that cell path is valid (collision-free, start to goal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from descentlab.core.config import check_config, field_error, option
from descentlab.core.seeding import resolve_device
from descentlab.planning import objective as obj
from descentlab.planning.cache import per_map
from descentlab.planning.discretize import (
    cell_path_from_waypoints,
    cell_path_length,
    invalid_reason,
    supercover_cells,
)
from descentlab.planning.distance_field import DistanceField
from descentlab.planning.potential import POTENTIALS, SOLVERS, graph_for
from descentlab.planning.soft_map import PaddedMap, obstacle_score, window_radius
from descentlab.planning.trajectories import (
    INITS,
    SEEDED,
    path_length,
    potential_routes,
    resample,
    routes_tensor,
)

MAX_WAYPOINTS = 12000


@dataclass
class PlannerConfig:
    """Gradient planner settings. Distances are in cells; β is a squared width (cells²)."""

    init: str = option("potential", "initial trajectories: the potential's route (complete), "
                       "line (+ bowed arcs; local descent only), random (the note), astar",
                       choices=INITS)
    potential: str = option("screened", "global potential of the route: screened Poisson "
                            "(shortest-way bias) or harmonic (Laplace)", choices=POTENTIALS)
    screening: float = option(4.0, "t of the screened potential, cells² (√t = its decay "
                              "length; raised ×4 per problem where z would underflow)", gt=0)
    risk: float = option(0.0, "screened potential: state cost of a free cell per unit of its "
                         "obstacle probability, so routes prefer cells believed free (0 = none; "
                         "a binary map is unaffected)", min=0)
    solver: str = option("auto", "potential solver: direct sparse LU (CPU), batched CG "
                         "(torch), auto = direct on CPU, cg on CUDA", choices=SOLVERS)
    n_starts: int = option(8, "trajectories optimised per problem (multi-start)", min=1)
    n_waypoints: int = option(0, "fixed number of waypoints, for an unseeded init without a "
                              "coarse stage (0 = from path length / spacing)", min=0)
    spacing: float = option(0.5, "waypoint spacing of the fine stage", gt=0)
    coarse_spacing: float = option(2.0, "waypoint spacing of the coarse stage (0 = no coarse stage)", min=0)
    coarse_iters: int = option(300, "Adam steps of the coarse stage", min=0)
    fine_iters: int = option(300, "Adam steps of the fine stage", min=0)
    lr: float = option(0.3, "Adam learning rate (cells per step), cosine-decayed in each stage", gt=0)
    beta_start: float = option(6.0, "soft-map β at the start of the coarse stage", gt=0)
    beta_end: float = option(0.5, "soft-map β of the fine stage", gt=0)
    w_smooth: float = option(0.02, "weight of Σ‖p_{t+1}-p_t‖² / spacing²", min=0)
    w_collision: float = option(1.0, "weight of the expected obstacle score Σ_t s(m_c)", min=0)
    w_clearance: float = option(5.0, "weight of the signed-distance hinge Σ relu(margin - d)² (0 = off)", min=0)
    growth: float = option(10.0, "factor by which collision weights rise over a stage (continuation)", gt=0)
    margin: float = option(0.3, "clearance wanted from obstacle squares", min=0)
    segment_samples: int = option(3, "points inside each segment where clearance is read "
                                  "(their gap should stay below the margin)", min=0)
    w_spacing: float = option(1.0, "weight of the spacing bound Σ relu(step - 1.5·spacing)²", min=0)
    w_goal: float = option(0.0, "weight of the goal term (0 = last waypoint pinned to the goal)", min=0)
    w_start: float = option(0.0, "weight of the start anchor (0 = first waypoint pinned to the start)", min=0)
    repair_rounds: int = option(4, "rounds of kick + re-optimise for problems with no valid start", min=0)
    dense: bool = option(False, "use the note's dense O(T·H·W) soft maps (reference; slow on big maps)")
    round_output: bool = option(False, "round waypoints to cells before deriving the cell path, "
                                "which is then the result's waypoints and length (the note)")
    upsample: int = option(4, "distance-field resolution, sub-cells per cell", min=1)
    record_every: int = option(0, "keep a snapshot of the waypoints every N steps (0 = none)", min=0)
    batch_points: int = option(4096, "seeded inits: most waypoints (problems × the longest) "
                               "optimised in one tensor; bigger batches are split by length "
                               "(0 = one tensor)", min=0)

    def __post_init__(self):
        check_config(self)
        if self.risk > 0 and self.potential != "screened":
            raise field_error(self, "risk", "needs the screened potential (harmonic has no "
                                            "state cost)")
        if self.n_waypoints and self.init in SEEDED:
            raise field_error(self, "n_waypoints", f"must be 0 with init {self.init!r}: a seeded "
                                                   f"route is refined at its own length (set "
                                                   f"spacing instead)")
        if self.n_waypoints and self.coarse_spacing > 0:
            raise field_error(self, "n_waypoints", "must be 0 with a coarse stage (coarse_spacing "
                                                   "> 0): the coarse path sets the fine stage's "
                                                   "count (set spacing, or coarse_spacing 0)")

    @property
    def pinned(self) -> bool:
        return self.w_goal == 0 and self.w_start == 0


_REFINE = dict(n_starts=1, coarse_spacing=0, spacing=1.0, fine_iters=150, lr=0.1,
               margin=0.05, segment_samples=7, beta_start=0.5, w_collision=0.0)
PRESETS: dict[str, PlannerConfig] = {
    "default": PlannerConfig(**_REFINE),
    "line": PlannerConfig(init="line"),
    "note": PlannerConfig(
        init="random", n_starts=1, n_waypoints=40, coarse_spacing=0, fine_iters=800, lr=0.1,
        beta_start=2.0, beta_end=2.0, w_smooth=1.0, w_collision=100.0, w_clearance=0.0,
        growth=1.0, w_spacing=0.0, w_goal=100.0, w_start=100.0, repair_rounds=0, dense=True,
        round_output=True),
    "astar": PlannerConfig(init="astar", **_REFINE),
    # Replanning (the navigator's default): the same route, a short refinement on a coarser
    # distance field; the executed path is the cell path, and most plans live a few steps
    # (nav-bench, four MovingAI maps: 20, 10 and 0 refinement steps travelled the same
    # lengths to within 0.1 %). risk 10: on an estimate that gives unseen cells at most
    # probability 0.4 (NavConfig.unknown; the seen cells' density below that), an unseen
    # cell costs up to 4 where a seen-free one costs about 0.2, so routes keep to what is
    # known where that is no longer (docs/experiments/planning.md §3, sessions 5 and 6).
    "nav": PlannerConfig(**{**_REFINE, "fine_iters": 10, "upsample": 2, "risk": 10.0}),
}
# The preset an ``init`` implies when only the init is named (``plan(..., init="line")``).
INIT_PRESETS = {"potential": "default", "line": "line", "random": "note", "astar": "astar"}


@dataclass
class PlanResult:
    """One problem's plan. waypoints (T, 2) float; cells (L, 2) int (with ``round_output``
    the waypoints are the cells: the rounded path that was checked)."""

    waypoints: np.ndarray
    cells: np.ndarray
    valid: bool
    length: float  # polyline length of the waypoints, cells
    reason: str | None = None  # why the cell path is invalid
    loss: list[float] = field(default_factory=list)  # total loss per Adam step (chosen start)
    history: list[np.ndarray] = field(default_factory=list)  # snapshots (T, 2) of the chosen start
    seconds: float = 0.0
    starts_valid: int = 0  # how many of the multi-starts ended valid
    fallback: bool = False  # refinement broke validity: the seed route itself is returned
    route: np.ndarray | None = None  # (L, 2) the seed route (seeded inits), else None
    timings: dict[str, float] = field(default_factory=dict)  # s per stage, batch share
    # filled in by descentlab.planning.plan():
    planner: str = ""
    preset: str | None = None  # the preset actually run (None: a planner without one)
    astar_length: float | None = None  # octile optimum (A*), when references were asked for
    anyangle_length: float | None = None  # exact any-angle optimum, likewise
    config: PlannerConfig | None = None

    @property
    def length_ratio(self) -> float | None:
        """Length / the octile optimum (None without the reference)."""
        return self.length / self.astar_length if self.astar_length else None

    @property
    def length_ratio_anyangle(self) -> float | None:
        """Length / the any-angle optimum (None without the reference)."""
        return self.length / self.anyangle_length if self.anyangle_length else None

    def to_dict(self) -> dict:
        """Everything JSON-able (waypoints rounded to 1e-4 cells), for ``--json`` and notebooks."""
        return {"planner": self.planner, "preset": self.preset, "valid": self.valid,
                "reason": self.reason, "length": self.length, "astar_length": self.astar_length,
                "anyangle_length": self.anyangle_length, "length_ratio": self.length_ratio,
                "length_ratio_anyangle": self.length_ratio_anyangle, "fallback": self.fallback,
                "seconds": self.seconds, "timings": self.timings,
                "starts_valid": self.starts_valid,
                "waypoints": np.asarray(self.waypoints).round(4).tolist(),
                "cells": np.asarray(self.cells).tolist(),
                "route": None if self.route is None else np.asarray(self.route).tolist(),
                "config": None if self.config is None else dataclasses.asdict(self.config)}


class _Problem:
    """Everything fixed during one batched optimisation: map tensors, endpoints."""

    def __init__(self, occ: np.ndarray, cfg: PlannerConfig, device: torch.device):
        self.occ_f = np.clip(np.asarray(occ, dtype=np.float32), 0.0, 1.0)  # (H, W) in [0, 1]
        self.occ_b = self.occ_f >= 0.5
        self.device = device
        radius = window_radius(max(cfg.beta_start, cfg.beta_end))
        self.pm = per_map(("padded-map", radius, str(device)), self.occ_f, lambda: PaddedMap(
            self.occ_f, radius, device=device, backend="auto"))
        self.occ_t = torch.from_numpy(self.occ_f).to(device)
        self.field = (per_map(("distance-field", cfg.upsample, str(device)), self.occ_b,
                              lambda: DistanceField(self.occ_b, cfg.upsample, device=device))
                      if cfg.w_clearance > 0 else None)
        self.routes: np.ndarray | None = None  # (B, L, 2) seed routes of seeded inits
        self.seed_routes: list[np.ndarray] | None = None  # routes given by the caller
        self.timings: dict[str, float] = {}  # seconds per stage, whole batch

    @contextlib.contextmanager
    def timed(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0


class GradientPlanner:
    """Plans by gradient descent on waypoints. ``plan`` for one problem, ``plan_batch`` for many."""

    def __init__(self, config: PlannerConfig | None = None, device: str | torch.device = "cpu",
                 seed: int = 0):
        self.cfg = config or PlannerConfig()
        self.device = resolve_device(device)  # "auto", an unusable GPU: named here
        self.seed = seed

    # ------------------------------------------------------------------ public API
    def plan(self, occ: np.ndarray, start, goal, init: np.ndarray | None = None,
             iters: int | None = None) -> PlanResult:
        """One problem. occ (H, W) bool or obstacle probability; start/goal (row, col).

        ``init`` (T, 2) warm-starts the fine stage (plus the usual multi-starts);
        ``iters`` overrides the fine-stage step count (e.g. few steps when replanning).
        """
        inits = None if init is None else [np.asarray(init, dtype=np.float32)]
        return self.plan_batch(occ, [start], [goal], inits=inits, iters=iters)[0]

    def plan_batch(self, occ: np.ndarray, starts, goals, inits: list[np.ndarray] | None = None,
                   iters: int | None = None, routes: list[np.ndarray] | None = None
                   ) -> list[PlanResult]:
        """Many problems on one map, all starts of all problems in one tensor.

        Problems of different lengths share the tensor: trajectory n uses its first
        ``counts[n]`` waypoints; the rest are pinned copies of its goal. With a seeded init,
        a problem whose goal is unreachable (another component of the free space, or an
        endpoint on an obstacle) gets an invalid result with reason "unreachable".
        ``routes`` (cell routes, one per problem) are seed routes already computed for these
        problems (the length split below passes its own down instead of solving again).
        """
        t_start = time.perf_counter()
        t_routes = 0.0  # the length split's potential solve (part of the init stage)
        if self.cfg.init in SEEDED and inits is None and routes is None:
            graph = graph_for(np.asarray(occ) >= 0.5)
            ok = [graph.connected(graph.node(a), graph.node(b)) for a, b in zip(
                np.asarray(starts).round().astype(int), np.asarray(goals).round().astype(int))]
            if not all(ok):
                idx = [i for i, good in enumerate(ok) if good]
                out = [_unplanned(a) for a in starts]
                if idx:
                    done = self.plan_batch(occ, [starts[i] for i in idx], [goals[i] for i in idx],
                                           iters=iters)
                    for i, res in zip(idx, done):
                        out[i] = res
                # this call's own time (the components) shared by every problem
                rest = time.perf_counter() - t_start - sum(r.seconds for r in out)
                for res in out:
                    res.seconds += rest / len(out)
                return out
            chunks, seed = _length_chunks(starts, goals, self.cfg, occ, self.device)
            t_routes = time.perf_counter() - t_start
            # a route that stops short (the solve failed numerically) seeds nothing
            short = {i: r.reason for i, r in enumerate(seed or []) if not r.reached}
            if len(chunks) > 1 or short:
                out: list = [None] * len(starts)
                for i, why in short.items():
                    out[i] = _unplanned(starts[i], f"the potential's route stops short of the "
                                                   f"goal ({why})")
                for idx in ([i for i in c if i not in short] for c in chunks):
                    if not idx:
                        continue
                    done = self.plan_batch(occ, [starts[i] for i in idx],
                                           [goals[i] for i in idx], iters=iters,
                                           routes=None if seed is None
                                           else [seed[i].cells for i in idx])
                    for i, res in zip(idx, done):
                        out[i] = res
                per = (time.perf_counter() - t_start) / len(starts)
                for res in out:
                    res.seconds = per
                    res.timings["init"] = res.timings.get("init", 0.0) + t_routes / len(starts)
                return out
            # one chunk: the routes the length estimate solved (None if none)
            routes = None if seed is None else [r.cells for r in seed]
        t0 = time.perf_counter()
        cfg = self.cfg
        prob = _Problem(occ, cfg, self.device)
        prob.seed_routes = routes
        prob.timings["setup"] = time.perf_counter() - t0
        prob.timings["init"] = t_routes
        s = torch.as_tensor(np.asarray(starts, dtype=np.float32), device=self.device)  # (B, 2)
        g = torch.as_tensor(np.asarray(goals, dtype=np.float32), device=self.device)  # (B, 2)
        gen = torch.Generator().manual_seed(self.seed)
        wp, counts, loss_hist, snaps = self._initial_and_optimise(prob, s, g, inits, iters, gen)
        results = self._select(prob, wp, counts, s, g, loss_hist, snaps)
        if prob.routes is not None:  # seeded: the route is the fallback, not repairs
            with prob.timed("check"):
                self._fallback_to_route(prob, results, starts, goals)
        todo = [] if prob.routes is not None else [b for b, r in enumerate(results) if not r.valid]
        for r in range(cfg.repair_rounds):
            if not todo:
                break
            idx = torch.tensor(todo, device=self.device)
            k = wp.shape[1]
            sub = wp[idx].reshape(len(todo) * k, -1, 2)  # (N', T, 2)
            sk, gk = s[idx].repeat_interleave(k, 0), g[idx].repeat_interleave(k, 0)
            c = _counts(path_length(sub), cfg.spacing, cfg.n_waypoints)
            sub = resample(sub, int(c.max()), c)
            blur_beta = min(cfg.beta_start, 4.0)
            sub = _kick(sub, c, prob.occ_b, 1.5 + 0.5 * r, gen,
                        lambda x: obstacle_score(x, prob.pm, blur_beta))
            sub, lh, sn = self._optimise(prob, sub, c, sk, gk, cfg.fine_iters,
                                         (max(2.0, cfg.beta_end), cfg.beta_end),
                                         cfg.growth * 2.0 ** (r + 1), cfg.spacing)
            t_new = max(wp.shape[2], sub.shape[1])
            wp = _pad_to(wp.reshape(-1, wp.shape[2], 2), t_new).reshape(wp.shape[0], k, t_new, 2)
            wp[idx] = _pad_to(sub, t_new).reshape(len(todo), k, t_new, 2)
            fixed = self._select(prob, sub.reshape(len(todo), k, -1, 2), c.reshape(len(todo), k),
                                 s[idx], g[idx], lh, sn)
            for b, res in zip(todo, fixed):
                if res.valid:
                    results[b] = res
            todo = [b for b in todo if not results[b].valid]
        per = 1.0 / max(1, len(results))
        timings = {k: v * per for k, v in prob.timings.items()}
        for res in results:
            res.seconds = (time.perf_counter() - t_start) * per
            res.timings = dict(timings)
        return results

    # ------------------------------------------------------------------ stages
    def _initial_and_optimise(self, prob, s, g, inits, iters, gen):
        """Initial trajectories, then coarse and fine stages.

        -> wp (B, K, T, 2), counts (B, K), loss history (steps, B·K), snapshots.
        """
        cfg = self.cfg
        b = s.shape[0]
        seeded = cfg.init in SEEDED and inits is None
        coarse = cfg.coarse_spacing > 0 and inits is None and cfg.init not in SEEDED
        spacing0 = cfg.coarse_spacing if coarse else cfg.spacing
        counts = _counts((g - s).norm(dim=1) * 1.1, spacing0, cfg.n_waypoints)  # (B,)
        t0 = int(counts.max())
        with prob.timed("init"):
            if inits is not None and cfg.init in SEEDED:  # a warm start alone (replans)
                wp = routes_tensor(inits, torch.float32, self.device)  # (B, 1, T, 2)
            elif prob.seed_routes is not None:  # routes the caller already has
                wp = routes_tensor(prob.seed_routes, torch.float32, self.device)
            else:
                wp = INITS[cfg.init](s, g, cfg.n_starts, t0, prob.occ_f, gen, cfg)  # (B, K, T, 2)
        k = wp.shape[1]
        if seeded:  # complete routes: kept for the fallback, refined at their own length
            prob.routes = wp[:, 0].cpu().numpy().round().astype(np.int64)  # (B, L, 2)
        if cfg.init in SEEDED:
            t0 = wp.shape[2]
        if inits is not None and cfg.init not in SEEDED:  # a warm start replaces start 0
            wp = wp.clone()
            wp[:, 0] = torch.stack([resample(torch.as_tensor(w, device=self.device)[None], t0)[0]
                                    for w in inits])  # (B, T, 2)
        flat = wp.reshape(b * k, t0, 2)  # (N, T, 2)
        counts = counts.repeat_interleave(k)  # (N,)
        if not coarse and not cfg.n_waypoints:  # a given path (route, warm start): its own length
            counts = _counts(path_length(flat), cfg.spacing)
            t0 = int(counts.max())
        if bool((counts != t0).any()) or flat.shape[1] != t0:
            flat = resample(flat, t0, counts)
        sk, gk = s.repeat_interleave(k, 0), g.repeat_interleave(k, 0)  # (N, 2)
        logs, snaps = [], []
        if coarse:
            flat, lh, snaps = self._optimise(prob, flat, counts, sk, gk, cfg.coarse_iters,
                                             (cfg.beta_start, cfg.beta_end), cfg.growth,
                                             cfg.coarse_spacing)
            logs.append(lh)
            counts = _counts(path_length(flat), cfg.spacing)
            t1 = int(counts.max())
            flat = resample(flat, t1, counts)
            snaps = [resample(x, t1, counts) for x in snaps]
        n_fine = cfg.fine_iters if iters is None else iters
        beta0 = cfg.beta_end if (coarse or inits is not None) else cfg.beta_start
        flat, lh, sn = self._optimise(prob, flat, counts, sk, gk, n_fine, (beta0, cfg.beta_end),
                                      cfg.growth, cfg.spacing)
        logs.append(lh)
        snaps += sn
        loss_hist = torch.cat(logs, 0)  # (steps, N)
        return flat.reshape(b, k, -1, 2), counts.reshape(b, k), loss_hist, snaps

    def _optimise(self, prob: _Problem, wp: torch.Tensor, counts: torch.Tensor, s: torch.Tensor,
                  g: torch.Tensor, iters: int, betas: tuple[float, float], growth: float,
                  spacing: float):
        """Adam on waypoints. wp (N, T, 2), counts (N,), s and g (N, 2).

        β goes geometrically from betas[0] to betas[1], collision weights rise geometrically
        by ``growth``, the learning rate is cosine-decayed. With pinned endpoints, waypoint 0
        and waypoints counts-1.. are held at start and goal.
        Returns (wp (N, T, 2), loss per step (iters, N), snapshots).
        """
        cfg = self.cfg
        n, t = wp.shape[0], wp.shape[1]
        fixed = wp.detach().clone()
        steps = torch.arange(t, device=wp.device)[None]  # (1, T)
        if cfg.pinned:
            tail = steps >= (counts[:, None] - 1)  # (N, T)
            fixed[:, 0] = s
            fixed = torch.where(tail[..., None], g[:, None], fixed)
            free = ((steps > 0) & ~tail)[..., None]  # (N, T, 1)
        else:
            free = torch.ones(n, t, 1, dtype=torch.bool, device=wp.device)
        if iters <= 0:
            return fixed, torch.zeros(0, n), []
        with prob.timed("descent"):
            return self._adam_loop(prob, fixed, free, s, g, iters, betas, growth, spacing)

    def _adam_loop(self, prob, fixed, free, s, g, iters, betas, growth, spacing):
        cfg = self.cfg
        wp, n = fixed, fixed.shape[0]
        params = fixed.clone()  # (N, T, 2); the pinned points never move (gradient masked)
        adam = _Adam(params, cfg.lr)
        losses = torch.empty(iters, n, dtype=wp.dtype, device=wp.device)
        snaps = []
        inv_h2 = 1.0 / (spacing * spacing)
        mask = free.to(wp.dtype)  # (N, T, 1)
        with torch.no_grad():
            for it in range(iters):
                frac = it / max(1, iters - 1)
                beta = betas[0] * (betas[1] / betas[0]) ** frac
                wc = growth ** frac
                loss, grad = self._loss_and_grad(prob, params, s, g, beta, wc, inv_h2, spacing)
                losses[it] = loss
                adam.step(grad.mul_(mask), cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))))
                if cfg.record_every and it % cfg.record_every == 0:
                    snaps.append(params.clone())
        return params, losses, snaps

    def _loss_and_grad(self, prob: _Problem, wp: torch.Tensor, s, g, beta: float, wc: float,
                       inv_h2: float, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted loss (N,) and its gradient (N, T, 2), every term in closed form."""
        cfg = self.cfg
        terms = [(cfg.w_smooth * inv_h2, obj.smoothness_term(wp))]
        if cfg.w_collision > 0:
            col = (obj.collision_term_dense(wp, prob.occ_t, beta) if cfg.dense
                   else obj.collision_term(wp, prob.pm, beta))
            terms.append((cfg.w_collision * wc, col))
        if prob.field is not None:
            terms.append((cfg.w_clearance * wc, obj.clearance_term(wp, prob.field, cfg.margin,
                                                                     cfg.segment_samples)))
        if cfg.w_spacing > 0:
            terms.append((cfg.w_spacing * wc, obj.spacing_term(wp, 1.5 * spacing)))
        if not cfg.pinned:
            terms += [(cfg.w_goal, obj.goal_term(wp, g)), (cfg.w_start, obj.start_term(wp, s))]
        loss = sum(w * v for w, (v, _) in terms)
        grad = terms[0][1][1].mul_(terms[0][0])
        for w, (_, gr) in terms[1:]:
            grad.add_(gr, alpha=w)
        return loss, grad

    # ------------------------------------------------------------------ evaluation
    def _select(self, prob, wp, counts, s, g, loss_hist, snaps) -> list[PlanResult]:
        """Per problem: derive every start's cell path; keep the shortest valid one.

        wp (B, K, T, 2), counts (B, K).
        """
        with prob.timed("check"):
            return self._select_timed(prob, wp, counts, s, g, loss_hist, snaps)

    def _select_timed(self, prob, wp, counts, s, g, loss_hist, snaps) -> list[PlanResult]:
        cfg = self.cfg
        b, k = wp.shape[0], wp.shape[1]
        wp_np = wp.detach().cpu().numpy().astype(np.float64)  # (B, K, T, 2)
        cnt = counts.cpu().numpy()
        s_np = s.cpu().numpy().round().astype(int)
        g_np = g.cpu().numpy().round().astype(int)
        lengths = path_length(wp.reshape(b * k, -1, 2)).reshape(b, k).cpu().numpy()
        out = []
        for i in range(b):
            best, best_key = None, None
            n_valid = 0
            for j in range(k):
                pts = wp_np[i, j, : cnt[i, j]]
                length = float(lengths[i, j])
                if cfg.round_output:  # the note's answer: the rounded path, as checked
                    cells = cell_path_from_waypoints(np.round(pts), prob.occ_b)
                    pts, length = cells.astype(np.float64), cell_path_length(cells)
                else:
                    cells = cell_path_from_waypoints(pts, prob.occ_b)
                reason = invalid_reason(prob.occ_b, cells, tuple(s_np[i]), tuple(g_np[i]))
                n_valid += reason is None
                key = (reason is not None, length)
                if best_key is None or key < best_key:
                    best, best_key = (j, pts, cells, reason), key
            j, pts, cells, reason = best
            n = i * k + j
            out.append(PlanResult(
                waypoints=pts, cells=cells, valid=reason is None,
                length=best_key[1], reason=reason,
                loss=loss_hist[:, n].cpu().tolist() if loss_hist.numel() else [],
                history=[x[n, : cnt[i, j]].cpu().numpy() for x in snaps],
                starts_valid=n_valid))
        return out

    @staticmethod
    def _fallback_to_route(prob, results, starts, goals) -> None:
        """Seeded mode: if refinement broke a path, return the seed route itself, if it is
        valid (checked as every plan is); else the result stays invalid and says why."""
        for i, res in enumerate(results):
            route = remove_padding(prob.routes[i])
            res.route = route
            if res.valid:
                continue
            why = invalid_reason(prob.occ_b, route, _cell(starts[i]), _cell(goals[i]))
            if why is None:
                results[i] = dataclasses.replace(
                    res, waypoints=route.astype(np.float64), cells=route, valid=True,
                    length=cell_path_length(route), reason=None, fallback=True)
            else:
                res.reason = f"{res.reason}; the seed route is invalid too: {why}"


def _length_chunks(starts, goals, cfg: PlannerConfig, occ=None,
                   device="cpu") -> tuple[list[list[int]], list[np.ndarray] | None]:
    """Problems grouped by length (shortest first) so that each group holds at most
    ``cfg.batch_points`` waypoints: a batch pads every path to the longest one, and one huge
    tensor runs slower per waypoint than a few cache-sized ones. Lengths are the potential's
    route lengths for ``init=potential`` (solved once here and passed on to the chunks as
    their seed routes), else the straight-line distance (which underestimates maze routes
    many times over).
    The routes are solved on ``device`` (the planner's), as the potential init would.
    Returns (chunks of problem indices, the routes (potential.Route, ``reached`` to be
    checked) when they were computed, else None)."""
    if cfg.batch_points <= 0 or len(starts) < 2:
        return [list(range(len(starts)))], None
    routes = None
    if cfg.init == "potential" and occ is not None:
        routes = potential_routes(occ, [tuple(map(int, np.round(a))) for a in starts],
                                  [tuple(map(int, np.round(b))) for b in goals], cfg, device)
        length = np.array([cell_path_length(r.cells) if len(r.cells) > 1 else 0.0
                           for r in routes])
    else:
        length = np.linalg.norm(np.asarray(goals, float) - np.asarray(starts, float), axis=1)
    est = length / cfg.spacing + 2  # (B,) waypoints
    chunks, cur, longest = [], [], 0.0
    for i in np.argsort(est, kind="stable").tolist():
        longest = max(longest, est[i])
        if cur and longest * (len(cur) + 1) > cfg.batch_points:
            chunks.append(cur)
            cur, longest = [], est[i]
        cur.append(i)
    return chunks + [cur], routes


def _unplanned(start, reason: str = "unreachable") -> PlanResult:
    """An invalid result, not planned: the start cell alone, length nan, ``reason``."""
    cell = np.asarray(start, dtype=np.float64).reshape(1, 2)
    return PlanResult(cell, cell.round().astype(np.int64), False, float("nan"), reason=reason)


def _cell(p) -> tuple[int, int]:
    """The cell (row, col) of a point."""
    return int(round(float(p[0]))), int(round(float(p[1])))


def _kick(wp: torch.Tensor, counts: torch.Tensor, occ: np.ndarray, amplitude: float,
          gen: torch.Generator, blur, reach: float = 3.0) -> torch.Tensor:
    """Push each trajectory sideways where its cell path hits an obstacle.

    A path that crosses a thin wall or squeezes between two diagonal obstacles sits in a
    local minimum of the collision costs: moving the crossing sideways makes it worse until
    it is past the obstacle's end. A smooth bump of ``amplitude`` cells across the path
    around each conflict (perturbed gradient descent) carries it past; the next round of
    optimisation then tightens it. The side is the one with less blurred occupancy
    (``blur``: points (M, 2) -> (M,), a wide soft map) for even-numbered starts, random for
    odd ones, so the multi-starts explore both. wp (N, T, 2) -> (N, T, 2).
    """
    out = wp.clone()
    wp_np = wp.cpu().numpy().astype(np.float64)
    for n in range(wp.shape[0]):
        m = int(counts[n])
        pts = wp_np[n, :m]
        cells = supercover_cells(pts)
        hit = cells[occ_at(occ, cells)]
        if len(hit) == 0:
            continue
        tangent = np.gradient(pts, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-9)
        bump = np.zeros(m)
        for c in hit[:: max(1, len(hit) // 16)]:
            d = np.linalg.norm(pts - c, axis=1)
            t = int(np.argmin(d))
            if n % 2 == 0:
                probe = np.stack([c + 2.0 * normal[t], c - 2.0 * normal[t]])
                occ_pm = blur(torch.as_tensor(probe, dtype=wp.dtype, device=wp.device))
                sign = 1.0 if float(occ_pm[0]) <= float(occ_pm[1]) else -1.0
            else:
                sign = 1.0 if torch.rand((), generator=gen).item() < 0.5 else -1.0
            bump += sign * np.clip(1.0 - d / reach, 0.0, None)
        bump[0] = bump[-1] = 0.0
        delta = amplitude * np.clip(bump, -1, 1)[:, None] * normal  # (m, 2)
        out[n, :m] += torch.as_tensor(delta, dtype=wp.dtype, device=wp.device)
    return out


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor, in place: no per-step allocation beyond the
    gradient, no host sync, and no import of torch's optimiser machinery (≈ 2 s on first use)."""

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps = param, lr, betas[0], betas[1], eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    def step(self, grad: torch.Tensor, lr: float) -> None:
        self.t += 1
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        denom = self.v.sqrt().div_(math.sqrt(c2)).add_(self.eps)
        self.p.addcdiv_(self.m, denom, value=-lr / c1)


def remove_padding(cells: np.ndarray) -> np.ndarray:
    """Drop the copies of the last cell that pad a route. (L, 2) -> (L', 2)."""
    same = np.all(cells == cells[-1], axis=1)[::-1]  # from the end
    trailing = len(cells) if same.all() else int(np.argmin(same))
    return cells[: max(1, len(cells) - trailing + 1)]


def _pad_to(wp: torch.Tensor, t: int) -> torch.Tensor:
    """Pad trajectories with copies of their last point to length t. (N, T, 2) -> (N, t, 2)."""
    if wp.shape[1] >= t:
        return wp
    return torch.cat([wp, wp[:, -1:].expand(-1, t - wp.shape[1], -1)], dim=1)


def occ_at(occ: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Obstacle (or off-map) flag per cell. cells (L, 2) -> (L,) bool."""
    h, w = occ.shape
    i, j = cells[:, 0], cells[:, 1]
    inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
    out = ~inside
    out[inside] = occ[i[inside], j[inside]]
    return out


def _counts(lengths: torch.Tensor, spacing: float, fixed: int = 0) -> torch.Tensor:
    """Waypoints per path of the given lengths at ``spacing``: (N,) -> (N,) long in [3, MAX];
    ``fixed`` (> 0) instead for every path."""
    if fixed:
        return torch.full_like(lengths, fixed, dtype=torch.long)
    return (torch.ceil(lengths / spacing) + 1).clamp(3, MAX_WAYPOINTS).long()
