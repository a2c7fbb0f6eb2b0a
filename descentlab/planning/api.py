"""The planning wing's Python API: the functions the CLI, the demo and the benchmarks call.

    >>> from descentlab.planning import load_map, plan
    >>> grid = load_map("note")
    >>> res = plan(grid, (0, 0), (19, 10))
    >>> res.valid, round(res.length_ratio, 2) <= 1.0
    (True, True)

:func:`plan` takes a map (a :class:`GridMap`, a file path, a name such as ``"note"`` or an
(H, W) bool array), a start and a goal ``(row, col)``, a planner name (:data:`PLANNERS`) and
optionally a preset (:data:`PRESETS`) and field overrides of :class:`PlannerConfig`; it
returns a :class:`PlanResult` with the waypoints, the cell path, validity, length, the
reference lengths (A*'s octile optimum, the exact any-angle optimum) and stage timings.
:func:`plan_many` does a batch on one map (one tensor); :func:`navigate` (navigation.py)
runs part B. Errors are :class:`InputError` naming the argument (``start``, ``goal``,
``preset``, a config field), never a command-line flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from descentlab.core.errors import InputError
from descentlab.planning.bench import PLANNERS
from descentlab.planning.grid import GridMap, as_grid
from descentlab.planning.planner import INIT_PRESETS, PRESETS, PlannerConfig, PlanResult

# The preset each planner runs unless told otherwise (None: the planner takes no config).
PLANNER_PRESETS: dict[str, str | None] = {"gradient": "default", "gradient-astar-init": "astar",
                                          "astar": None, "anyangle": None}


def resolve_preset(planner: str, preset: str | None = None, init: str | None = None) -> str | None:
    """The preset a planner runs: the one named, else the one its init implies, else the
    planner's own (``gradient-astar-init`` always runs ``astar``)."""
    if planner not in PLANNERS:
        raise InputError(f"unknown planner {planner!r}; choose from {', '.join(PLANNERS)}",
                         where="planner")
    own = PLANNER_PRESETS[planner]
    if own is None:
        return None
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}",
                         where="preset")
    if planner == "gradient-astar-init":
        if preset not in (None, own):
            raise InputError(f"planner 'gradient-astar-init' runs the '{own}' preset; use "
                             f"planner 'gradient' with preset {preset!r} instead", where="preset")
        return own
    return preset or (INIT_PRESETS[init] if init else own)


def planner_config(planner: str = "gradient", preset: str | None = None,
                   config: PlannerConfig | None = None, **overrides) -> tuple[PlannerConfig | None,
                                                                          str | None]:
    """(config, preset name) for a planner: ``config`` as given (preset name None: a config
    of its own), or the preset with ``overrides`` (PlannerConfig field names) on top. Bad
    fields name themselves; a preset and a config together are refused (which would run?)."""
    if config is not None and preset is not None:
        raise InputError(f"give a preset or a config, not both (preset {preset!r})",
                         where="config")
    name = resolve_preset(planner, preset, overrides.get("init"))
    if name is None:
        if overrides or config is not None:
            raise InputError(f"planner {planner!r} takes no planner options", where="planner")
        return None, None
    fields = {f.name for f in dataclasses.fields(PlannerConfig)}
    for key in overrides:
        if key not in fields:
            raise InputError(f"unknown planner option {key!r}", where=key)
    if planner == "gradient-astar-init" and overrides.get("init", "astar") != "astar":
        raise InputError(f"planner 'gradient-astar-init' seeds with A* (init 'astar'), got "
                         f"{overrides['init']!r}; use planner 'gradient' for another init",
                         where="init")
    if config is not None:
        return dataclasses.replace(config, **overrides) if overrides else config, None
    return dataclasses.replace(PRESETS[name], **overrides), name


def _check_problem(grid: GridMap, start, goal) -> tuple[tuple[int, int], tuple[int, int]]:
    return grid.check_cell(start, "start"), grid.check_cell(goal, "goal")


def plan_many(map_: GridMap | str | np.ndarray, starts: Sequence, goals: Sequence, *,
              planner: str = "gradient", preset: str | None = None,
              config: PlannerConfig | None = None, device: str = "cpu", seed: int = 0,
              references: bool = False, **overrides) -> list[PlanResult]:
    """Plan every (start, goal) on one map in one batch. See :func:`plan`."""
    from descentlab.core.seeding import resolve_device
    from descentlab.planning.anyangle import AnyAngleMap
    from descentlab.planning.search import astar

    grid = as_grid(map_)
    if len(starts) != len(goals):
        raise InputError(f"{len(goals)} goals for {len(starts)} starts (one goal per start)",
                         where="goals")
    pairs = [_check_problem(grid, s, g) for s, g in zip(starts, goals)]
    cfg, name = planner_config(planner, preset, config, **overrides)
    dev = str(resolve_device(device))  # "auto", an unusable GPU: named before any work
    if not pairs:
        return []
    results = PLANNERS[planner](grid.occ, [p[0] for p in pairs], [p[1] for p in pairs], cfg,
                                dev, seed)
    ref = AnyAngleMap(grid.occ) if references else None
    for res, (s, g) in zip(results, pairs):
        res.planner, res.preset, res.config = planner, name, cfg
        if references:
            found = astar(grid.occ, s, g)
            res.astar_length = None if found is None else found.length
            aa = ref.path(s, g)
            res.anyangle_length = None if aa is None else aa.length
    return results


def plan(map_: GridMap | str | np.ndarray, start, goal, *, planner: str = "gradient",
         preset: str | None = None, config: PlannerConfig | None = None, device: str = "cpu",
         seed: int = 0, references: bool = True, **overrides) -> PlanResult:
    """One plan. ``map_``: GridMap, map name/file or (H, W) array; ``start``/``goal`` (row, col).

    ``planner``: ``gradient`` (default: the potential's route refined by the note's loss; no
    search), ``gradient-astar-init``, ``astar``, ``anyangle`` (the exact reference).
    ``preset``: ``default``, ``line`` (local descent only), ``note`` (the note's setup),
    ``astar``. Keyword ``overrides`` set :class:`PlannerConfig` fields (e.g.
    ``init="line"``, ``fine_iters=100``, ``record_every=10``). An unreachable goal raises
    InputError (where ``goal``); an invalid plan is returned with ``valid`` False and a
    ``reason``. With ``references`` the A* and any-angle optimal lengths are filled in.
    """
    grid = as_grid(map_)
    s, g = _check_problem(grid, start, goal)
    from descentlab.planning.potential import graph_for

    graph = graph_for(grid.occ)
    if not graph.connected(graph.node(s), graph.node(g)):
        raise InputError(f"the goal {g} cannot be reached from {s} on map '{grid.name}'",
                         where="goal")
    return plan_many(grid, [s], [g], planner=planner, preset=preset, config=config,
                     device=device, seed=seed, references=references, **overrides)[0]
