"""Gradient-based trajectory planning (SPEC A) and navigation with limited visibility (SPEC B).

The public API — what the CLI, the demo and the benchmarks call::

    from descentlab.planning import load_map, plan, navigate
    grid = load_map("note")                        # or a MovingAI .map, .npy, image, .txt
    res = plan(grid, (0, 0), (19, 10))             # PlanResult: waypoints, cells, valid, ...
    nav = navigate(grid, (0, 0), (19, 10), sensor="ray")   # NavResult

Modules: grid (maps, scenarios), potential (the global convex potential and its routes),
planner (the gradient planner, presets), anyangle and search (references), bench
(plan-bench), navigation, sensors, mapping, nav_bench (part B).
"""

from descentlab.core.lazy import lazy_exports

# name -> module: imported on first use (PEP 562), so `import descentlab.planning` (and the
# CLI's --help) stays cheap and torch loads only when a planner is used.
_EXPORTS = {
    "plan": "api", "plan_many": "api", "planner_config": "api", "PLANNER_PRESETS": "api",
    "PLANNERS": "bench", "plan_bench": "bench",
    "GridMap": "grid", "Scenario": "grid", "as_grid": "grid", "load_map": "grid",
    "load_scenarios": "grid", "sample_scenarios": "grid",
    "navigate": "navigation", "NAV_PRESETS": "navigation", "NAVIGATORS": "navigation",
    "NavConfig": "navigation", "NavResult": "navigation",
    "PRESETS": "planner", "GradientPlanner": "planner", "PlannerConfig": "planner",
    "PlanResult": "planner",
    "GridGraph": "potential", "graph_for": "potential", "route_potential": "potential",
    "solve_potential": "potential",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
