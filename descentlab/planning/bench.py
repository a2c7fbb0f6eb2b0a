"""Planners by name, and the plan-bench over MovingAI scenarios.

``PLANNERS`` maps a name to ``fn(occ, starts, goals, config, device, seed) -> list[PlanResult]``:

* ``gradient`` — the pure gradient planner (no search), preset ``default`` unless given;
* ``gradient-astar-init`` — gradient refinement of the A* path (preset ``astar``);
* ``astar`` — the A* baseline itself (8-connected, octile, no corner cutting);
* ``anyangle`` — the exact any-angle optimum (visibility graph over convex corners, a search:
  the reference limit, not a method of this package).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from descentlab.core.errors import InputError
from descentlab.planning.anyangle import anyangle_lengths
from descentlab.planning.discretize import anyangle_cells, invalid_reason
from descentlab.planning.grid import GridMap, Scenario
from descentlab.planning.planner import PRESETS, GradientPlanner, PlannerConfig, PlanResult
from descentlab.planning.search import astar

PlannerFn = Callable[..., list[PlanResult]]


def _gradient(occ, starts, goals, config: PlannerConfig | None, device, seed) -> list[PlanResult]:
    """The potential's route refined by descent, no search."""
    return GradientPlanner(config or PRESETS["default"], device, seed).plan_batch(occ, starts, goals)


def _gradient_astar(occ, starts, goals, config: PlannerConfig | None, device,
                    seed) -> list[PlanResult]:
    """The gradient refinement of the A* path."""
    return GradientPlanner(config or PRESETS["astar"], device, seed).plan_batch(occ, starts, goals)


def _astar(occ, starts, goals, config, device, seed) -> list[PlanResult]:
    """The A* baseline (8-connected, octile, no corner cutting)."""
    out = []
    for s, g in zip(starts, goals):
        t0 = time.perf_counter()
        res = astar(np.asarray(occ, dtype=bool), tuple(s), tuple(g))
        dt = time.perf_counter() - t0
        if res is None:
            out.append(PlanResult(np.zeros((0, 2)), np.zeros((0, 2), int), False, float("nan"),
                                  reason="unreachable", seconds=dt))
        else:
            out.append(PlanResult(res.cells.astype(float), res.cells, True, res.length,
                                  seconds=dt, starts_valid=1))
    return out


def _anyangle(occ, starts, goals, config, device, seed) -> list[PlanResult]:
    """The exact any-angle optimum (a search: the reference, not a method here)."""
    from descentlab.planning.anyangle import AnyAngleMap

    occ = np.asarray(occ, dtype=bool)
    ref = AnyAngleMap(occ)
    out = []
    for s, g in zip(starts, goals):
        t0 = time.perf_counter()
        res = ref.path(tuple(s), tuple(g))
        dt = time.perf_counter() - t0
        if res is None:
            out.append(PlanResult(np.zeros((0, 2)), np.zeros((0, 2), int), False, float("nan"),
                                  reason="unreachable", seconds=dt))
            continue
        # the optimum touches obstacle corners and edges: its cells step round them
        cells = anyangle_cells(res.points, occ)
        why = invalid_reason(occ, cells, tuple(s), tuple(g))
        out.append(PlanResult(res.points, cells, why is None, res.length, reason=why,
                              seconds=dt, starts_valid=int(why is None)))
    return out


PLANNERS: dict[str, PlannerFn] = {
    "gradient": _gradient,
    "gradient-astar-init": _gradient_astar,
    "astar": _astar,
    "anyangle": _anyangle,
}


def stage_seconds_per_plan(results: Sequence[PlanResult]) -> dict[str, float]:
    """Seconds per plan in each stage of a batch (setup, init, descent, check). Each result
    holds its own batch's (length chunk's) per-plan share, so the mean over results is the
    whole batch's stage time per plan."""
    stages = sorted({k for r in results for k in r.timings})
    return {k: float(np.mean([r.timings.get(k, 0.0) for r in results])) for k in stages}


def plan_bench(grid: GridMap, scenarios: Sequence[Scenario], planner: str,
               config: PlannerConfig | None = None, device: str = "cpu", seed: int = 0,
               batch: int = 0, log: Callable[[str], None] | None = None,
               references: bool = True) -> dict:
    """Run ``planner`` on every scenario (``batch`` problems per tensor; 0 = all at once).

    Reports success (valid cell path), continuous length / scenario optimal length over
    successes, time per plan (batched time divided by the batch), and the A* time per plan
    on the same scenarios, measured in the same run. With ``references`` the exact any-angle
    optimum (anyangle.py) is computed too and lengths are also reported against it. A
    scenario without a positive optimal length (start == goal) has no length ratio.
    """
    if planner not in PLANNERS:
        raise InputError(f"unknown planner {planner!r}; choose from {', '.join(PLANNERS)}",
                         where="planner")
    if batch < 0:
        raise InputError(f"must be >= 0 (0 = all at once), got {batch}", where="batch")
    if not scenarios:
        raise InputError("no scenarios to plan", where="scenarios")
    fn = PLANNERS[planner]
    batch = batch or len(scenarios)
    results: list[PlanResult] = []
    for k in range(0, len(scenarios), batch):
        chunk = scenarios[k:k + batch]
        results += fn(grid.occ, [s.start for s in chunk], [s.goal for s in chunk], config,
                      device, seed)
        if log:
            done = len(results)
            ok = sum(r.valid for r in results)
            log(f"{planner}: {done}/{len(scenarios)} planned, {ok} valid")
    astar_times = [r.seconds for r in _astar(grid.occ, [s.start for s in scenarios],
                                              [s.goal for s in scenarios], None, device, seed)]
    anyangle = (anyangle_lengths(grid.occ, [s.start for s in scenarios],
                                 [s.goal for s in scenarios]) if references
                else np.full(len(scenarios), np.nan))
    rows = []
    for sc, res, at, aa in zip(scenarios, results, astar_times, anyangle):
        ok_aa = res.valid and bool(np.isfinite(aa)) and aa > 0
        ok_opt = res.valid and sc.optimal_length > 0
        rows.append({"bucket": sc.bucket, "start": list(sc.start), "goal": list(sc.goal),
                     "optimal_length": sc.optimal_length,
                     "anyangle_length": float(aa) if np.isfinite(aa) else None,
                     "valid": res.valid,
                     "length": res.length if res.valid else None,
                     "length_ratio": res.length / sc.optimal_length if ok_opt else None,
                     "length_ratio_anyangle": res.length / aa if ok_aa else None,
                     "time_s": res.seconds, "astar_time_s": at, "fallback": res.fallback,
                     "reason": res.reason})
    ratios = [r["length_ratio"] for r in rows if r["length_ratio"] is not None]
    ratios_aa = [r["length_ratio_anyangle"] for r in rows if r["length_ratio_anyangle"] is not None]
    return {
        "planner": planner, "map": grid.name, "device": str(device), "n": len(rows),
        "success_rate": float(np.mean([r["valid"] for r in rows])) if rows else 0.0,
        "length_ratio_median": float(np.median(ratios)) if ratios else None,
        "length_ratio_max": float(np.max(ratios)) if ratios else None,
        "length_ratio_anyangle_median": float(np.median(ratios_aa)) if ratios_aa else None,
        "length_ratio_anyangle_max": float(np.max(ratios_aa)) if ratios_aa else None,
        "anyangle_over_octile_median": (float(np.median([
            r["anyangle_length"] / r["optimal_length"] for r in rows
            if r["anyangle_length"] and r["optimal_length"] > 0])) if references else None),
        "time_per_plan_s_median": float(np.median([r["time_s"] for r in rows])),
        "time_ratio_vs_astar": (float(np.median([r["time_s"] for r in rows]))
                                / max(1e-12, float(np.median(astar_times)))),
        "fallbacks": int(sum(r.fallback for r in results)),
        "stage_seconds_per_plan": stage_seconds_per_plan(results),
        "astar_time_per_plan_s_median": float(np.median(astar_times)),
        "batch": batch,
        "per_bucket": rows,
    }
