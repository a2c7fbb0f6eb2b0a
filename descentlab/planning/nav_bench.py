"""nav-bench: every navigation planner on the same problems, side by side (SPEC B).

Problems are either generated (:data:`PROBLEM_SETS`): seeded random 64×64 maps at 20%
obstacles — solvable by construction: start and goal are the cells of the largest connected
component nearest two opposite corners (8-connected moves without corner cutting connect
exactly the 4-connected components, so a 4-connected labelling decides reachability) — and
maps of other kinds (random 96×96 at 30%, perfect mazes, rooms) with random ends in the
largest component at least a minimum length apart; or MovingAI scenarios (Sturtevant 2012)
with an optimal length inside a chosen band.

Per planner the summary has ``success_rate``, ``length_ratio_mean`` (cells travelled /
optimal length on the true map, successful runs), ``bumps_mean``, ``replans_mean``,
``time_per_step_ms_median`` (map update + replanning, over every step of every run) and
``map_accuracy_seen`` (fraction of seen cells classified right, mean over runs);
``gradient_vs_<baseline>_length`` (every other planner run) is the gradient navigator's
mean travelled length over that baseline's on the problems both solved, and
``gradient_vs_<baseline>_length_ci95`` its paired bootstrap 95 % interval over those problems.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from descentlab.core.errors import InputError
from descentlab.planning.grid import GridMap, maze_map, random_map, rooms_map

CORNER_PAIRS = (((0, 0), (1, 1)), ((1, 1), (0, 0)), ((0, 1), (1, 0)), ((1, 0), (0, 1)))
# Side bounds of a random map. 4: two opposite-corner ends apart. 1024: twice the side of
# the 512x512 MovingAI maps the navigation is measured on (shared/benchmarks/movingai); the
# navigator replans on the whole map (one potential unknown per cell, per replan), so much
# larger maps are out of reach, and sides far beyond this exhaust memory before the first
# step (200000 asks for 40 GB of map alone).
RANDOM_SIZE_RANGE = (4, 1024)
PAIR_TRIES = 1000  # random pairs pair_problem draws before giving up


@dataclass
class Problem:
    """One navigation problem: true map, start, goal, optimal (A*) length, a label."""

    grid: GridMap
    start: tuple[int, int]
    goal: tuple[int, int]
    optimal: float
    label: str


def random_problem(seed: int, size: int = 64, density: float = 0.2) -> Problem:
    """A seeded random ``size``² map; start and goal near opposite corners, same component.

    ``size`` in :data:`RANDOM_SIZE_RANGE`, ``density`` in [0, 1); InputError naming the
    argument when out of range, or naming ``density`` when the map drawn has no two
    distinct connected ends."""
    from scipy.ndimage import label

    from descentlab.planning.grid import random_map
    from descentlab.planning.search import astar

    lo, hi = RANDOM_SIZE_RANGE
    if not lo <= size <= hi:
        raise InputError(f"must be in [{lo}, {hi}] (the navigator replans on the whole map), "
                         f"got {size}", where="size")
    if not 0 <= density < 1:
        raise InputError(f"must be in [0, 1), got {density}", where="density")
    grid = random_map(size, size, density, seed)
    labels, n = label(~grid.occ)  # 4-connected components of free cells, (H, W) int
    if n == 0:
        raise InputError(f"the random {size}x{size} map of seed {seed} at this density has no "
                         f"free cell: lower it", where="density")
    biggest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    cells = np.argwhere(labels == biggest)  # (F, 2)
    a, b = CORNER_PAIRS[seed % len(CORNER_PAIRS)]
    ends = []
    for corner in (a, b):
        target = np.array(corner) * (size - 1)
        ends.append(tuple(int(v) for v in cells[np.argmin(((cells - target) ** 2).sum(1))]))
    start, goal = ends
    if start == goal:
        raise InputError(f"the random {size}x{size} map of seed {seed} at this density has no "
                         f"two connected free cells for the ends: lower it", where="density")
    found = astar(grid.occ, start, goal)
    assert found is not None, "start and goal share a component"
    return Problem(grid, start, goal, found.length, f"random64-s{seed}")


def random_problems(n: int, seed: int, size: int = 64, density: float = 0.2) -> list[Problem]:
    """``n`` problems from seeds ``seed, seed+1, ...``."""
    return [random_problem(seed + i, size, density) for i in range(n)]


def pair_problem(grid: GridMap, seed: int, min_length: float = 30.0) -> Problem:
    """Two seeded random free cells of ``grid``'s largest 4-connected component whose
    optimal (A*) length is at least ``min_length``: the first of :data:`PAIR_TRIES` random
    pairs that is. InputError naming ``min_length`` when none is (at once when no path in
    the component can be that long: F cells hold no path longer than (F - 1)·√2)."""
    from scipy.ndimage import label

    from descentlab.planning.search import astar

    if not math.isfinite(min_length):
        raise InputError(f"must be a finite number, got {min_length}", where="min_length")
    labels, n = label(~grid.occ)  # 4-connected components, (H, W)
    if n == 0:
        raise InputError(f"map {grid.name} has no free cell", where="grid")
    biggest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    cells = np.argwhere(labels == biggest)  # (F, 2)
    longest = (len(cells) - 1) * math.sqrt(2)
    if min_length > longest:
        raise InputError(f"no path on map {grid.name} is {min_length:g} long: its largest "
                         f"free component of {len(cells)} cells has none longer than "
                         f"{longest:.1f}", where="min_length")
    rng = np.random.default_rng(seed)
    for _ in range(PAIR_TRIES if len(cells) >= 2 else 0):
        a, b = (tuple(int(v) for v in cells[i]) for i in rng.choice(len(cells), 2, replace=False))
        found = astar(grid.occ, a, b)
        if found is not None and found.length >= min_length:
            return Problem(grid, a, b, found.length, f"{grid.name}-{a[0]},{a[1]}-{b[0]},{b[1]}")
    raise InputError(f"none of {PAIR_TRIES} random pairs of cells on map {grid.name} is at "
                     f"least {min_length:g} apart: lower it", where="min_length")


def _generated(make: Callable[[int], GridMap]) -> Callable[[int, int, float], list[Problem]]:
    """``n`` problems, one map ``make(seed + i)`` each, ends by :func:`pair_problem`."""
    return lambda n, seed, min_length: [pair_problem(make(seed + i), seed + i, min_length)
                                        for i in range(n)]


def _random64(n: int, seed: int, min_length: float) -> list[Problem]:
    return random_problems(n, seed)


# Named problem sets of generated maps (nav-bench --maps NAME): (description, problems(n,
# seed, min_length)). The last three are map kinds unlike the MovingAI benchmarks, a check
# that no navigation setting is tuned to those.
PROBLEM_SETS: dict[str, tuple[str, Callable[[int, int, float], list[Problem]]]] = {
    "random64": ("random 64x64 maps, density 0.2, ends near opposite corners", _random64),
    "random96": ("random 96x96 maps, density 0.3, random ends",
                 _generated(lambda s: random_map(96, 96, 0.3, s))),
    "maze81": ("perfect 81x81 mazes of 1-wide corridors, random ends",
               _generated(lambda s: maze_map(40, s))),
    "rooms121": ("121x121 maps of 12-cell rooms, one door per wall, random ends",
                 _generated(lambda s: rooms_map(121, 12, s))),
}


def movingai_problems(map_path: str | os.PathLike, n: int, *, min_length: float = 30.0,
                      max_length: float = 90.0, scen_path: str | os.PathLike | None = None
                      ) -> list[Problem]:
    """``n`` scenarios of a MovingAI map with optimal length in [min_length, max_length].

    The scenario file defaults to ``MAP.scen`` beside the map; scenarios are spread over the
    band's buckets (grid.sample_scenarios).
    """
    from descentlab.planning.grid import load_movingai_map, load_scenarios, sample_scenarios

    grid = load_movingai_map(map_path)
    scen = scen_path or f"{map_path}.scen"
    scenarios = [s for s in load_scenarios(scen, grid)
                 if min_length <= s.optimal_length <= max_length]
    if not scenarios:
        raise InputError(f"no scenario with optimal length in [{min_length}, {max_length}]",
                         where=scen)
    chosen = sample_scenarios(scenarios, n)
    return [Problem(grid, s.start, s.goal, s.optimal_length,
                    f"{grid.name}-{s.start[0]},{s.start[1]}-{s.goal[0]},{s.goal[1]}")
            for s in chosen]


@dataclass
class BenchSetup:
    """What every planner shares: sensor, mapper, navigation settings."""

    sensor: str
    sensor_config: object
    mapper: str
    mapper_config: object
    nav: object
    planner_config: object = None
    device: str = "cpu"
    seed: int = 0


def run_one(problem: Problem, planner: str, setup: BenchSetup, index: int):
    """One navigation run; the sensor noise is seeded by problem, the same for every planner."""
    from descentlab.planning.mapping import make_mapper
    from descentlab.planning.navigation import make_navigator, run_loop
    from descentlab.planning.sensors import make_sensor

    sensor = make_sensor(setup.sensor, setup.sensor_config)
    mapper = make_mapper(setup.mapper, problem.grid.shape, setup.mapper_config)
    nav = make_navigator(planner, setup.nav, setup.planner_config, setup.device,
                         setup.seed + index)
    rng = np.random.default_rng([setup.seed, index])
    return run_loop(problem.grid.occ, problem.start, problem.goal, sensor, mapper, nav,
                    setup.nav, rng=rng, optimal=problem.optimal)


def summarise(runs: Sequence) -> dict:
    """Aggregate NavResults of one planner (see the module docstring)."""
    ok = [r for r in runs if r.success]
    steps_ms = [t for r in runs for t in r.step_ms]
    acc = [r.map_accuracy_seen for r in runs if not math.isnan(r.map_accuracy_seen)]
    return {
        "n": len(runs),
        "success_rate": len(ok) / len(runs) if runs else math.nan,
        "length_ratio_mean": float(np.mean([r.length_ratio for r in ok])) if ok else math.nan,
        "bumps_mean": float(np.mean([r.bumps for r in runs])) if runs else math.nan,
        "replans_mean": float(np.mean([r.replans for r in runs])) if runs else math.nan,
        "steps_mean": float(np.mean([r.steps for r in runs])) if runs else math.nan,
        "time_per_step_ms_median": float(np.median(steps_ms)) if steps_ms else math.nan,
        "time_per_replan_ms_median": (float(np.median([t for r in runs for t in r.plan_ms]))
                                      if any(r.plan_ms for r in runs) else math.nan),
        "map_accuracy_seen": float(np.mean(acc)) if acc else math.nan,
        "failures": {k: sum(r.reason == k for r in runs if not r.success)
                     for k in sorted({r.reason for r in runs if not r.success})},
    }


def _both_solved(runs_a: Sequence, runs_b: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Travelled lengths of ``a`` and ``b`` on the problems both solved: (M,), (M,)."""
    both = [(a.travelled, b.travelled) for a, b in zip(runs_a, runs_b) if a.success and b.success]
    la, lb = zip(*both) if both else ((), ())
    return np.asarray(la, dtype=float), np.asarray(lb, dtype=float)


def length_ratio_between(runs_a: Sequence, runs_b: Sequence) -> float:
    """Mean travelled length of ``a`` over that of ``b`` on the problems both solved."""
    return _ratio_of_means(*_both_solved(runs_a, runs_b))


def _ratio_of_means(la: np.ndarray, lb: np.ndarray) -> float:
    return float(la.mean() / lb.mean()) if len(la) else math.nan


def ratio_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 10000,
                   seed: int = 0) -> tuple[float, float]:
    """Paired percentile-bootstrap interval (Efron & Tibshirani 1993, ch. 13) of
    mean(a) / mean(b): problems are resampled with replacement, each keeping its pair.
    a, b (M,). How far the ratio could move with other problems of the same kind; one long
    detour among 40 problems widens it a lot. Seeded: the same runs give the same interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))  # (R, M)
    ratios = a[idx].sum(1) / b[idx].sum(1)  # (R,)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


def _summaries(results: dict[str, list]) -> dict:
    out = {"summary": {p: summarise(r) for p, r in results.items()}}
    if "gradient" in results:
        for p in results:
            if p != "gradient":
                la, lb = _both_solved(results["gradient"], results[p])
                out[f"gradient_vs_{p}_length"] = _ratio_of_means(la, lb)
                out[f"gradient_vs_{p}_length_ci95"] = list(ratio_interval(la, lb))
    return out


def _check_planners(planners: Sequence[str]) -> None:
    twice = sorted({p for p in planners if list(planners).count(p) > 1})
    if twice:
        raise InputError(f"{', '.join(map(repr, twice))} named more than once (each "
                         f"planner runs once per problem)", where="planners")
    if not planners:
        raise InputError("no planner to run", where="planners")


def run_bench(problems: Sequence[Problem], planners: Sequence[str], setup: BenchSetup,
              on_run: Callable[[str, int, object], None] | None = None,
              results: dict[str, list] | None = None) -> dict:
    """Every planner on every problem. Returns ``{"summary", "gradient_vs_<p>_length"
    (per other planner p), "runs"}`` (``runs``: one row of scalars per planner and
    problem). The NavResults are appended to ``results[planner]`` when given. A planner
    named twice is an InputError (``planners``): it would count each problem twice."""
    _check_planners(planners)
    results = {p: [] for p in planners} if results is None else results
    mine: dict[str, list] = {p: [] for p in planners}
    rows = []
    for i, prob in enumerate(problems):
        for p in planners:
            res = run_one(prob, p, setup, i)
            mine[p].append(res)
            results.setdefault(p, []).append(res)
            rows.append({"planner": p, "problem": prob.label, "start": prob.start,
                         "goal": prob.goal, **res.summary()})
            if on_run is not None:
                on_run(p, i, res)
    return {**_summaries(mine), "runs": rows}


def run_groups(groups: dict[str, Sequence[Problem]], planners: Sequence[str], setup: BenchSetup,
               on_run: Callable[[str, str, int, object], None] | None = None) -> dict:
    """:func:`run_bench` per named group of problems (a map). One group: its result. More:
    the summaries over every run of every group (the same definitions as per group, e.g.
    the step-time median over all steps), ``per_map`` (each group's, without runs), and
    ``runs`` (every row, with its group under ``maps``)."""
    _check_planners(planners)
    pooled: dict[str, list] = {p: [] for p in planners}
    per_map, rows = {}, []
    for name, problems in groups.items():
        res = run_bench(problems, planners, setup, results=pooled,
                        on_run=None if on_run is None else
                        (lambda p, i, r, name=name: on_run(name, p, i, r)))
        per_map[name] = res
        rows += [{"maps": name, **row} for row in res["runs"]]
    if len(per_map) == 1:
        out = dict(next(iter(per_map.values())))
    else:
        out = _summaries(pooled)
        out["per_map"] = {k: {kk: vv for kk, vv in v.items() if kk != "runs"}
                          for k, v in per_map.items()}
    out["runs"] = rows
    return out
