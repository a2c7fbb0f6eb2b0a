"""Planners by name, and the plan-bench over MovingAI scenarios.

``PLANNERS`` maps a name to ``fn(occ, starts, goals, config, device, seed) -> list[PlanResult]``:

* ``gradient`` — the pure gradient planner (no search), preset ``default`` unless given;
* ``gradient-astar-init`` — gradient refinement of the A* path (preset ``astar``);
* ``astar`` — the A* baseline itself (8-connected, octile, no corner cutting).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from descentlab.planning.grid import GridMap, Scenario
from descentlab.planning.planner import PRESETS, GradientPlanner, PlannerConfig, PlanResult
from descentlab.planning.search import astar

PlannerFn = Callable[..., list[PlanResult]]


def _gradient(occ, starts, goals, config: PlannerConfig | None, device, seed) -> list[PlanResult]:
    return GradientPlanner(config or PRESETS["default"], device, seed).plan_batch(occ, starts, goals)


def _gradient_astar(occ, starts, goals, config: PlannerConfig | None, device,
                    seed) -> list[PlanResult]:
    return GradientPlanner(config or PRESETS["astar"], device, seed).plan_batch(occ, starts, goals)


def _astar(occ, starts, goals, config, device, seed) -> list[PlanResult]:
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


PLANNERS: dict[str, PlannerFn] = {
    "gradient": _gradient,
    "gradient-astar-init": _gradient_astar,
    "astar": _astar,
}


def plan_bench(grid: GridMap, scenarios: Sequence[Scenario], planner: str,
               config: PlannerConfig | None = None, device: str = "cpu", seed: int = 0,
               batch: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Run ``planner`` on every scenario (``batch`` problems per tensor; 0 = all at once).

    Reports success (valid cell path), continuous length / scenario optimal length over
    successes, time per plan (batched time divided by the batch), and the A* time per plan
    on the same scenarios, measured in the same run.
    """
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
    rows = []
    for sc, res, at in zip(scenarios, results, astar_times):
        rows.append({"bucket": sc.bucket, "start": list(sc.start), "goal": list(sc.goal),
                     "optimal_length": sc.optimal_length, "valid": res.valid,
                     "length": res.length if res.valid else None,
                     "length_ratio": res.length / sc.optimal_length if res.valid else None,
                     "time_s": res.seconds, "astar_time_s": at, "fallback": res.fallback,
                     "reason": res.reason})
    ratios = [r["length_ratio"] for r in rows if r["valid"]]
    stages = sorted({k for r in results for k in r.timings})
    return {
        "planner": planner, "map": grid.name, "device": str(device), "n": len(rows),
        "success_rate": float(np.mean([r["valid"] for r in rows])) if rows else 0.0,
        "length_ratio_median": float(np.median(ratios)) if ratios else None,
        "length_ratio_max": float(np.max(ratios)) if ratios else None,
        "time_per_plan_s_median": float(np.median([r["time_s"] for r in rows])),
        "fallbacks": int(sum(r.fallback for r in results)),
        "stage_seconds_per_plan": {k: float(np.median([r.timings.get(k, 0.0) for r in results]))
                                   for k in stages},
        "astar_time_per_plan_s_median": float(np.median(astar_times)),
        "batch": batch,
        "per_bucket": rows,
    }
