"""Planning, mapping and execution with limited visibility (SPEC B): the navigation loop.

Each step (Cho 2024, "Gradient-based planning, mapping and execution"):

1. observe: the sensor reads the TRUE map around the bot;
2. update the map estimate (mapping.py);
3. replan on the estimate (warm start: the previous plan shifted so that it starts at the
   bot, :func:`shift_warm_start`) — every step (``replan=always``, the note) or only when the
   remaining plan crosses a cell now believed blocked or after a bump (``on_change``, what
   D* Lite does);
4. move up to ``k`` cells along the plan on the TRUE map. A move into a real wall (or a
   diagonal past a real wall's corner) stops in front of it and counts as a bump; the bot
   also stops before a cell its own estimate says is blocked.

Planners come from :data:`NAVIGATORS` (one signature): ``gradient`` (the gradient planner of
part A on the estimated obstacle probabilities), ``astar`` (the baseline: A* on the
estimate thresholded at 0.5 with unseen cells free — the freespace assumption) and
``astar_back`` (the same, searched from the goal to the bot as D* Lite searches: an equally
short plan on every estimate, with ties between equal-length paths broken from the other
end, so the two show how much a baseline's travelled length owes to its tie-breaking).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from descentlab.core.config import check_config, option
from descentlab.core.errors import InputError
from descentlab.planning.discretize import cell_path_length
from descentlab.planning.mapping import map_accuracy

BLOCKED = 0.5  # an estimated obstacle probability at or above this is a wall
REPLAN_POLICIES = ("always", "on_change")


@dataclasses.dataclass
class NavConfig:
    """The navigation loop's settings (shared by every planner)."""

    k: int = option(3, "cells moved along the plan per step", min=1)
    replan: str = option("on_change", "replan every step ('always', the note) or when the plan "
                         "is blocked on the estimate or after a bump ('on_change')",
                         choices=REPLAN_POLICIES)
    replan_iters: int = option(10, "gradient planner: Adam steps of a warm-started replan",
                               min=0)
    warm_start: bool = option(True, "gradient planner: warm-start each replan from the previous "
                                    "plan shifted to the bot's cell")
    unknown: float = option(0.4, "obstacle probability the planners assume for unseen cells "
                                 "(at most this with unknown_from_seen): below 0.5 they are "
                                 "passable (the freespace assumption) and the gradient "
                                 "planner's potential prices them (its risk); negative = the "
                                 "mapper's own estimate there, e.g. its prior", max=1)
    unknown_from_seen: bool = option(True, "unseen cells get the mean obstacle probability of "
                                           "the seen cells (this map's density so far), capped "
                                           "at unknown when that is below 0.5; off = unknown "
                                           "itself")
    max_steps: int = option(0, "step limit (0 = 10 × optimal length / k + 50)", min=0)
    bump_feedback: bool = option(True, "a bump marks the wall it hit in the map estimate")
    stall_limit: int = option(6, "give up after this many steps in a row without moving (or "
                                 "without a plan)", min=1)
    crop_margin: int = option(16, "gradient planner: plan on the box around the bot, the goal "
                                  "and the warm start plus this margin (cold plans: see "
                                  "cold_reach; cells outside = walls; the whole estimate "
                                  "when the box has no way)", min=1)
    cold_reach: float = option(0.5, "gradient planner: a cold plan's box reaches this fraction "
                                    "of the bot-goal distance beyond them (at least "
                                    "crop_margin); 1.0 halved no detour but doubled the time "
                                    "per replan on 9 MovingAI problems", min=0)

    def __post_init__(self):
        check_config(self)


class Plan(NamedTuple):
    """A plan from the bot's cell. cells (L, 2) int; waypoints (T, 2) float or None."""

    cells: np.ndarray
    waypoints: np.ndarray | None
    valid: bool
    cold: bool = True  # planned from scratch (not warm-started)


# ---------------------------------------------------------------- planners

class AStarNavigator:
    """Baseline: A* on the estimate (≥ 0.5 = wall), unseen cells as the planning map says."""

    name = "astar"
    backward = False  # search from the goal to the bot (D* Lite's direction)

    def __init__(self, nav: NavConfig, planner_config=None, device: str = "cpu", seed: int = 0):
        self.nav = nav

    def plan(self, occ: np.ndarray, pos: tuple[int, int], goal: tuple[int, int],
             warm: np.ndarray | None) -> Plan | None:
        """occ (H, W) float planning map. None when the estimate has no path."""
        from descentlab.planning.search import astar

        res = astar(occ >= BLOCKED, *((goal, pos) if self.backward else (pos, goal)))
        if res is None:
            return None
        return Plan(res.cells[::-1].copy() if self.backward else res.cells, None, True)


class BackwardAStarNavigator(AStarNavigator):
    """The baseline searched from the goal to the bot, as D* Lite searches: as short a plan
    on every estimate, ties between equal-length paths broken from the goal's end.

    A* breaks ties towards the deeper node, so on open ground its path from the bot takes
    the diagonal moves first and the straight ones last; searched from the goal, the
    straight moves come first. Under the freespace assumption that choice, invisible to the
    plan's length, decides which side of an unseen wall the bot meets (nav-bench, arena2
    109,198 → 154,171: 56.2 cells travelled one way, 299.9 the other;
    docs/experiments/planning.md §3).
    """

    name = "astar_back"
    backward = True


class GradientNavigator:
    """The gradient planner of part A on the estimated obstacle probabilities.

    The estimate (unseen cells passable, at the seen cells' obstacle density capped at
    ``NavConfig.unknown``) is a map like any other, so a plan from scratch is the planner's
    default: the route of steepest ascent on the global potential of the estimate
    (complete: if the estimate has a way, the route takes it; the ``nav`` preset's state
    cost makes it keep to cells seen free where that is no longer), refined by the note's
    loss.
    A replan whose warm start (the previous plan shifted to the bot) is still free on the
    estimate refines the warm start alone (one trajectory, ``replan_iters`` Adam steps); one
    whose warm start is blocked (the reason to replan with ``replan=on_change``), or whose
    refinement was not valid, plans afresh. A blocked warm start is not refined: on arena2,
    refining it first was valid 8 % of the time for 25 ms per replan, and as a second start
    beside the route it was valid 16 % and shorter than the route 4 % of the time on maze512
    while doubling the descent's cost.
    Fresh plans are made on the box around the bot and the goal grown by the
    larger of ``crop_margin`` and ``cold_reach`` × the bot-goal distance (a box with margin
    16 alone made detours on arena2 1.36× A*'s) and, if the estimate has no way inside the
    box, on the whole estimate. The potential's operator and factorisation are cached per
    estimate (cache.py): an unchanged estimate is never re-solved. None when the estimate
    has no way at all.
    """

    name = "gradient"

    def __init__(self, nav: NavConfig, planner_config=None, device: str = "cpu", seed: int = 0):
        from descentlab.planning.planner import GradientPlanner

        self.nav = nav
        self.config = planner_config or default_planner_config()
        self.device, self.seed = device, seed
        self.cold = GradientPlanner(self.config, device, seed)
        self.warm = GradientPlanner(dataclasses.replace(self.config, n_starts=1, repair_rounds=0),
                                    device, seed)

    def plan(self, occ: np.ndarray, pos: tuple[int, int], goal: tuple[int, int],
             warm: np.ndarray | None) -> Plan | None:
        """occ (H, W) float planning map; warm (T, 2) or None (a plan from scratch)."""
        from descentlab.planning.discretize import cell_path_from_waypoints, invalid_reason

        warm = warm if self.nav.warm_start else None
        if warm is not None:
            blocked = occ >= BLOCKED
            if invalid_reason(blocked, cell_path_from_waypoints(warm, blocked), pos, goal) is None:
                res = self._plan(self.warm, occ, pos, goal, warm, self.nav.crop_margin,
                                 self.nav.replan_iters)
                if res.valid:
                    return Plan(res.cells, res.waypoints, True, False)
        # the box reaches part of the way again as the goal is: detours fit inside
        dist = max(abs(pos[0] - goal[0]), abs(pos[1] - goal[1]))
        reach = max(self.nav.crop_margin, int(self.nav.cold_reach * dist))
        res = self._plan(self.cold, occ, pos, goal, None, reach, None)
        if res.reason == "unreachable":  # no way inside the box: the whole estimate
            res = self._plan(self.cold, occ, pos, goal, None, max(occ.shape), None)
        if res.reason == "unreachable":
            return None
        return Plan(res.cells, res.waypoints, bool(res.valid), True)

    @staticmethod
    def _plan(planner, occ, pos, goal, warm, margin: int, iters: int | None):
        """Plan on the box around pos, goal (and warm) plus ``margin``; map coordinates back.

        occ (H, W); warm (T, 2) or None. Returns the planner's result with waypoints (T, 2)
        float and cells (L, 2) int in map coordinates.
        """
        pts = np.array([pos, goal], dtype=np.float64)
        if warm is not None:
            pts = np.concatenate([pts, warm], axis=0)
        h, w = occ.shape
        lo = np.maximum(np.floor(pts.min(0)).astype(int) - margin, 0)  # (2,)
        hi = np.minimum(np.ceil(pts.max(0)).astype(int) + margin + 1, (h, w))
        sub = occ[lo[0]:hi[0], lo[1]:hi[1]]  # (h', w') view, outside = walls for the planner
        start, end = (pos[0] - lo[0], pos[1] - lo[1]), (goal[0] - lo[0], goal[1] - lo[1])
        res = planner.plan(sub, start, end, init=None if warm is None else warm - lo,
                           iters=iters)
        return dataclasses.replace(
            res, waypoints=np.asarray(res.waypoints, dtype=np.float64) + lo,
            cells=np.asarray(res.cells, dtype=np.int64).reshape(-1, 2) + lo)


def default_planner_config():
    """The planner the navigator uses unless told otherwise: the ``nav`` preset."""
    from descentlab.planning.planner import PRESETS

    return PRESETS["nav"]


NAVIGATORS: dict[str, Callable[..., object]] = {
    "gradient": GradientNavigator,
    "astar": AStarNavigator,
    "astar_back": BackwardAStarNavigator,
}


def make_navigator(name: str, nav: NavConfig, planner_config=None, device: str = "cpu",
                   seed: int = 0):
    """Build planner ``name`` of :data:`NAVIGATORS`."""
    if name not in NAVIGATORS:
        raise InputError(f"unknown planner {name!r}; choose from {', '.join(NAVIGATORS)}",
                         where="planner")
    return NAVIGATORS[name](nav, planner_config, device, seed)


# ---------------------------------------------------------------- pieces of the loop

def shift_warm_start(waypoints: np.ndarray, pos: tuple[int, int]) -> np.ndarray:
    """The previous plan shifted so that it starts at the bot. (T, 2) -> (T, 2).

    Drops the ``s`` waypoints before the one nearest the bot's cell (``s = 1`` when the bot
    moved to the plan's second waypoint: the note's "shift by one"), pads the end with
    copies of the last waypoint so T stays fixed, and puts the first waypoint on the bot.
    """
    wp = np.asarray(waypoints, dtype=np.float64)
    s = int(np.argmin(np.linalg.norm(wp - np.asarray(pos, dtype=np.float64), axis=1)))
    out = np.concatenate([wp[s:], np.repeat(wp[-1:], s, axis=0)], axis=0)  # (T, 2)
    out[0] = pos
    return out


def plan_blocked(occ: np.ndarray, cells: np.ndarray) -> bool:
    """True iff a cell of the path is believed blocked (≥ 0.5) or a diagonal cuts one's corner.

    occ (H, W) float planning map, cells (L, 2).
    """
    if len(cells) == 0:
        return True
    b = occ >= BLOCKED
    r, c = cells[:, 0], cells[:, 1]
    h, w = b.shape
    if ((r < 0) | (r >= h) | (c < 0) | (c >= w)).any() or b[r, c].any():
        return True
    diag = (np.abs(np.diff(r)) == 1) & (np.abs(np.diff(c)) == 1)  # (L-1,)
    return bool((b[r[:-1][diag], c[1:][diag]] | b[r[1:][diag], c[:-1][diag]]).any())


class Move(NamedTuple):
    """Result of executing a plan: the cells entered, where a bump happened (if any)."""

    cells: list[tuple[int, int]]
    bumped: list[tuple[int, int]]  # true walls the bot hit
    stopped: bool  # stopped before a cell the estimate calls blocked / a non-neighbour step


def execute(true_occ: np.ndarray, est: np.ndarray, pos: tuple[int, int], cells: np.ndarray,
            k: int) -> Move:
    """Move up to ``k`` cells along ``cells`` (which starts at or passes through ``pos``).

    On the TRUE map ``true_occ`` (H, W) bool: a step into a wall, or a diagonal step whose two
    side cells are not both free, does not happen — the bot stays in front and reports the
    wall(s) it hit. Before that, the bot refuses a step into a cell its estimate ``est``
    (H, W) calls blocked. The bot never enters an obstacle cell.
    """
    h, w = true_occ.shape
    seq = [tuple(c) for c in np.asarray(cells).tolist()]
    if pos in seq:
        seq = seq[seq.index(pos) + 1:]
    entered: list[tuple[int, int]] = []
    cur = pos
    for nxt in seq[:k]:
        dr, dc = nxt[0] - cur[0], nxt[1] - cur[1]
        if max(abs(dr), abs(dc)) != 1 or not (0 <= nxt[0] < h and 0 <= nxt[1] < w):
            return Move(entered, [], True)
        if est[nxt] >= BLOCKED:
            return Move(entered, [], True)
        hit = [nxt] if true_occ[nxt] else []
        if dr and dc:
            hit += [s for s in ((cur[0], nxt[1]), (nxt[0], cur[1])) if true_occ[s]]
        if hit:
            return Move(entered, hit, True)
        entered.append(nxt)
        cur = nxt
    return Move(entered, [], not entered)


# ---------------------------------------------------------------- the loop

@dataclasses.dataclass
class Frame:
    """What the bot knew at one step (for the GIF). prob (H, W) uint8 = estimate × 255."""

    pos: tuple[int, int]
    prob: np.ndarray
    seen: np.ndarray
    plan_cells: np.ndarray | None
    plan_waypoints: np.ndarray | None


@dataclasses.dataclass
class NavResult:
    """One navigation run. path (N, 2): the cells the bot occupied, start first."""

    success: bool
    reason: str  # goal | step_limit | stuck | no_plan (none on the estimate, stall_limit times)
    steps: int
    travelled: float  # octile length of the executed path
    optimal: float  # A* length on the true map
    replans: int
    cold_replans: int  # replans planned from scratch
    invalid_plans: int  # replans whose plan was not valid on the estimate
    bumps: int
    stops: int  # steps cut short before a cell believed blocked
    step_ms: list[float]  # per step: map update + replanning, milliseconds
    plan_ms: list[float]  # per replan
    map_accuracy_seen: float
    seen_cells: int
    path: np.ndarray
    frames: list[Frame] = dataclasses.field(default_factory=list)
    estimate: np.ndarray | None = None  # (H, W) the mapper's final obstacle probabilities
    seen: np.ndarray | None = None  # (H, W) bool, cells ever observed

    @property
    def length_ratio(self) -> float:
        """Cells travelled / optimal length (nan unless successful)."""
        return self.travelled / self.optimal if self.success and self.optimal > 0 else math.nan

    def summary(self) -> dict:
        """Scalars for tables and JSON."""
        return {"success": self.success, "reason": self.reason, "steps": self.steps,
                "travelled": self.travelled, "optimal": self.optimal,
                "length_ratio": self.length_ratio, "replans": self.replans,
                "cold_replans": self.cold_replans, "invalid_plans": self.invalid_plans,
                "bumps": self.bumps, "stops": self.stops,
                "time_per_step_ms_median": float(np.median(self.step_ms)) if self.step_ms else 0.0,
                "time_per_replan_ms_median": float(np.median(self.plan_ms)) if self.plan_ms else 0.0,
                "map_accuracy_seen": self.map_accuracy_seen, "seen_cells": self.seen_cells}


def step_limit(nav: NavConfig, optimal: float) -> int:
    """``nav.max_steps``, or 10 × the optimal length / k + 50 when it is 0."""
    return nav.max_steps or int(10 * optimal / nav.k) + 50


def planning_map(mapper, unknown: float, from_seen: bool = True) -> np.ndarray:
    """The obstacle probabilities the planner sees. (H, W) float.

    Unseen cells get ``unknown`` (0 = the freespace assumption), or the mapper's own value
    there when ``unknown`` is negative. With ``from_seen`` and ``unknown`` below the wall
    threshold (passable unseen cells) they get the mean obstacle probability of the seen
    cells, at most ``unknown``: the map's obstacle density so far, an empirical prior that
    is never below what the mapper believes of its own seen-free cells on average. A maze
    (half walls) keeps the cap, a map of open rooms pays less for its unseen cells
    (``nav-bench --maps maze81 rooms121``). Nothing seen yet: ``unknown``.
    """
    prob, seen = mapper.prob, mapper.seen
    if unknown < 0:
        return prob
    if from_seen and unknown < BLOCKED and seen.any():
        unknown = min(unknown, float(prob[seen].mean()))
    return np.where(seen, prob, unknown)


def run_loop(true_occ: np.ndarray, start: tuple[int, int], goal: tuple[int, int], sensor,
             mapper, navigator, nav: NavConfig, *, rng: np.random.Generator,
             optimal: float | None = None, record: bool = False,
             on_step: Callable[[int, tuple[int, int]], None] | None = None) -> NavResult:
    """Run the loop from ``start`` until ``goal`` or the step limit. true_occ (H, W) bool.

    ``optimal``: the A* length on the true map (computed when None). ``record``: keep a
    :class:`Frame` per step. ``on_step(step, pos)`` is called after every move (progress).
    """
    from descentlab.planning.search import astar

    true_occ = np.asarray(true_occ, dtype=bool)
    start, goal = (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1]))
    if optimal is None:
        found = astar(true_occ, start, goal)
        optimal = found.length if found is not None else math.nan
    max_steps = step_limit(nav, optimal)
    pos = start
    path = [pos]
    plan: Plan | None = None
    replans = cold = invalid = bumps = stops = 0
    step_ms: list[float] = []
    plan_ms: list[float] = []
    frames: list[Frame] = []
    reason = "step_limit"
    force = True  # replan at the next step regardless of the policy
    stalled = 0  # steps in a row without moving
    step = 0
    for step in range(1, max_steps + 1):
        obs = sensor.observe(true_occ, pos, rng)
        t0 = time.perf_counter()
        mapper.update(obs)
        occ = planning_map(mapper, nav.unknown, nav.unknown_from_seen)
        occ[pos] = 0.0  # the bot stands there; the goal is known to be free
        occ[goal] = 0.0
        rest = _remaining(plan.cells, pos) if plan is not None else None
        if (force or nav.replan == "always" or rest is None or tuple(rest[-1]) != goal
                or plan_blocked(occ, rest)):
            # warm start from the previous plan unless the bot is stalled on it
            warm = (shift_warm_start(plan.waypoints, pos)
                    if plan is not None and plan.waypoints is not None and not stalled
                    else None)
            t1 = time.perf_counter()
            plan = navigator.plan(occ, pos, goal, warm)
            plan_ms.append(1e3 * (time.perf_counter() - t1))
            replans += 1
            force = False
            if plan is not None:
                cold += plan.cold
                invalid += not plan.valid
        step_ms.append(1e3 * (time.perf_counter() - t0))
        if plan is None:  # no plan on this estimate: stay, observe again (noise may clear)
            stalled += 1
            force = True
            if stalled >= nav.stall_limit:
                reason = "no_plan"
                break
            continue
        if record:
            frames.append(Frame(pos, np.round(mapper.prob * 255).astype(np.uint8),
                                mapper.seen.copy(), plan.cells, plan.waypoints))
        move = execute(true_occ, occ, pos, plan.cells, nav.k)
        path += move.cells
        if move.cells:
            pos = move.cells[-1]
        if move.bumped:
            bumps += 1
            force = True
            if nav.bump_feedback:
                for cell in move.bumped:
                    mapper.mark_occupied(cell)
        elif move.stopped:
            stops += 1
            force = True
        stalled = 0 if move.cells else stalled + 1
        if on_step is not None:
            on_step(step, pos)
        if pos == goal:
            reason = "goal"
            break
        if stalled >= nav.stall_limit:
            reason = "stuck"
            break
    cells = np.asarray(path, dtype=np.int64).reshape(-1, 2)
    prob = mapper.prob
    return NavResult(
        success=pos == goal, reason=reason, steps=step, travelled=cell_path_length(cells),
        optimal=float(optimal), replans=replans, cold_replans=cold, invalid_plans=invalid,
        bumps=bumps, stops=stops, step_ms=step_ms,
        plan_ms=plan_ms, map_accuracy_seen=map_accuracy(prob, true_occ, mapper.seen),
        seen_cells=int(mapper.seen.sum()), path=cells, frames=frames, estimate=prob,
        seen=mapper.seen.copy())


def _remaining(cells: np.ndarray, pos: tuple[int, int]) -> np.ndarray:
    """The part of a cell path from ``pos`` on (the whole path if ``pos`` is not on it)."""
    hit = np.flatnonzero((cells[:, 0] == pos[0]) & (cells[:, 1] == pos[1]))
    return cells[hit[0]:] if len(hit) else cells


def validate_problem(grid, start: tuple[int, int], goal: tuple[int, int]) -> float:
    """Start and goal free cells of ``grid`` (a GridMap), goal reachable: else InputError.

    Returns the optimal (A*) length on the true map.
    """
    from descentlab.planning.search import astar

    start = grid.check_cell(start, "start")
    goal = grid.check_cell(goal, "goal")
    found = astar(grid.occ, start, goal)
    if found is None:
        raise InputError(f"goal {goal} is unreachable from start {start} on map '{grid.name}'",
                         where="goal")
    return found.length


# ---------------------------------------------------------------- the wing's API

# The note's setup: its map, the soft sensor, the gradient mapper; one cell per step, a
# replan every step, the planner reads the mapper's estimate everywhere.
NAV_PRESETS: dict[str, dict] = {
    "note": {"map": "note", "sensor": "soft", "mapper": "note",
             "nav": {"k": 1, "replan": "always", "unknown": -1.0}},
}


def navigate(map_=None, start=None, goal=None, *, preset: str | None = None,
             sensor: str | None = None, mapper: str | None = None, planner: str = "gradient",
             nav: NavConfig | None = None, sensor_config=None, mapper_config=None,
             planner_config=None, device: str = "cpu", seed: int = 0, record: bool = False,
             on_step: Callable[[int, tuple[int, int]], None] | None = None) -> NavResult:
    """Navigate a map seen only near the bot (SPEC B), from ``start`` to ``goal`` (row, col).

    ``map_``: a GridMap, a map name/file or an (H, W) bool array (default: the preset's).
    ``preset``: ``note`` (the note's map, soft sensor, gradient mapper, k = 1, replan always).
    ``sensor`` (:data:`SENSORS`: ``ray`` default, ``soft``), ``mapper`` (:data:`MAPPERS`:
    ``logodds`` default, ``note``), ``planner`` (:data:`NAVIGATORS`: ``gradient`` default,
    or a baseline), each with an optional config. Returns a :class:`NavResult` (success, path,
    bumps, timings, final estimate). Errors name the argument.
    """
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START, as_grid
    from descentlab.planning.mapping import DEFAULT_MAPPER, make_mapper
    from descentlab.planning.sensors import DEFAULT_SENSOR, make_sensor

    if preset is not None and preset not in NAV_PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(NAV_PRESETS)}",
                         where="preset")
    p = NAV_PRESETS.get(preset or "", {})
    map_ = p.get("map") if map_ is None else map_
    if map_ is None:
        raise InputError("a map is needed (a GridMap, a file, 'note' or an array)", where="map")
    grid = as_grid(map_)
    if grid.name == "note":
        start = NOTE_START if start is None else start
        goal = NOTE_GOAL if goal is None else goal
    if start is None or goal is None:
        raise InputError("start and goal are required for this map", where="start/goal")
    optimal = validate_problem(grid, start, goal)
    start, goal = grid.check_cell(start, "start"), grid.check_cell(goal, "goal")
    nav = nav or NavConfig(**p.get("nav", {}))
    sensor_obj = make_sensor(sensor or p.get("sensor", DEFAULT_SENSOR), sensor_config)
    mapper_obj = make_mapper(mapper or p.get("mapper", DEFAULT_MAPPER), grid.shape, mapper_config)
    from descentlab.core.seeding import resolve_device, torch_threads

    device = resolve_device(device)  # "auto", an unusable GPU: named before any work
    navigator = make_navigator(planner, nav, planner_config, str(device), seed)
    with torch_threads(device):
        return run_loop(grid.occ, start, goal, sensor_obj, mapper_obj, navigator, nav,
                        rng=np.random.default_rng(seed), optimal=optimal, record=record,
                        on_step=on_step)
