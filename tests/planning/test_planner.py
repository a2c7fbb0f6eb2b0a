"""The gradient planner: valid plans on the note's map, A*-seeded refinement, batching."""

import dataclasses

import numpy as np
import pytest
import torch

from descentlab.planning.discretize import cell_path_length, invalid_reason, polyline_length
from descentlab.planning.grid import NOTE_GOAL, NOTE_START, note_map, random_map
from descentlab.planning.planner import PRESETS, GradientPlanner, PlannerConfig
from descentlab.planning.search import astar
from descentlab.planning.trajectories import init_line, resample

FAST = dataclasses.replace(PRESETS["default"], coarse_iters=150, fine_iters=150, n_starts=4)


def test_default_planner_succeeds_on_the_note_map():
    occ = note_map().occ
    res = GradientPlanner(FAST, seed=0).plan(occ, NOTE_START, NOTE_GOAL)
    assert res.valid, res.reason
    assert invalid_reason(occ, res.cells, NOTE_START, NOTE_GOAL) is None
    np.testing.assert_allclose(res.waypoints[0], NOTE_START)
    np.testing.assert_allclose(res.waypoints[-1], NOTE_GOAL)
    opt = astar(occ, NOTE_START, NOTE_GOAL).length
    assert res.length == pytest.approx(polyline_length(res.waypoints), rel=1e-5)
    assert 0.9 * opt < res.length < 1.15 * opt  # any-angle can beat octile, but not by much


def test_batch_of_problems_matches_validity_of_each_plan():
    grid = random_map(40, 40, 0.15, seed=3)
    occ = grid.occ.copy()
    starts, goals = [(1, 1), (38, 2), (5, 30)], [(37, 36), (2, 37), (35, 8)]
    for c in starts + goals:
        occ[c] = False
    res = GradientPlanner(FAST, seed=0).plan_batch(occ, starts, goals)
    assert len(res) == 3
    for r, s, g in zip(res, starts, goals):
        assert r.valid == (invalid_reason(occ, r.cells, s, g) is None)
        assert tuple(r.cells[0]) == s and r.valid
    assert sum(r.valid for r in res) == 3


def test_astar_seeded_refinement_is_valid_and_not_longer_than_astar():
    grid = random_map(48, 48, 0.1, seed=1)
    occ = grid.occ.copy()
    s, g = (2, 2), (45, 20)  # off the 8 octile directions: any-angle paths are shorter
    occ[s] = occ[g] = False
    ref = astar(occ, s, g)
    assert ref is not None
    res = GradientPlanner(PRESETS["astar"]).plan(occ, s, g)
    assert res.valid
    assert res.length <= ref.length + 1e-6


def test_note_preset_is_the_notes_setup():
    cfg = PRESETS["note"]
    assert cfg.init == "random" and cfg.dense and cfg.round_output
    assert cfg.w_goal > 0 and cfg.w_start > 0 and cfg.w_clearance == 0 and cfg.n_starts == 1
    res = GradientPlanner(dataclasses.replace(cfg, fine_iters=50), seed=0).plan(
        note_map().occ, NOTE_START, NOTE_GOAL)
    assert res.valid == (invalid_reason(note_map().occ, res.cells, NOTE_START, NOTE_GOAL) is None)
    raw = GradientPlanner(dataclasses.replace(cfg, fine_iters=50, round_output=False),
                          seed=0).plan(note_map().occ, NOTE_START, NOTE_GOAL)
    assert len(raw.waypoints) == cfg.n_waypoints  # the note's T waypoints, before rounding


def test_note_preset_reports_the_rounded_path_it_checked():
    # round_output: validity is judged on the cells of the rounded waypoints, so the plan's
    # waypoints, length and ratio are that path's (they were the unrounded polyline's)
    from descentlab.planning import load_map, plan

    res = plan(load_map("note"), NOTE_START, NOTE_GOAL, preset="note", seed=1)
    assert res.valid and invalid_reason(note_map().occ, res.cells, NOTE_START, NOTE_GOAL) is None
    np.testing.assert_array_equal(res.waypoints, res.cells)
    assert res.length == pytest.approx(cell_path_length(res.cells), abs=1e-9)
    assert res.length == pytest.approx(polyline_length(res.waypoints), abs=1e-9)
    assert res.length_ratio == pytest.approx(res.length / res.astar_length)


def test_warm_start_is_used():
    # An L-shaped warm start (along row 0, then down column 19) differs from every default
    # start (the straight diagonal is 26.9 long); with no steps the plan must be the L.
    occ = np.zeros((20, 20), bool)
    init = np.concatenate([np.stack([np.zeros(20), np.arange(20.0)], 1),
                           np.stack([np.arange(1.0, 20.0), np.full(19, 19.0)], 1)])
    cfg = dataclasses.replace(FAST, n_starts=1)
    res = GradientPlanner(cfg).plan(occ, (0, 0), (19, 19), init=init, iters=0)
    np.testing.assert_allclose(res.waypoints[[0, -1]], [[0, 0], [19, 19]])
    assert res.valid and res.length == pytest.approx(38.0, rel=1e-4)
    assert np.abs(res.waypoints - [0, 19]).sum(1).min() < 1e-6  # passes the corner
    cold = GradientPlanner(cfg).plan(occ, (0, 0), (19, 19), iters=0)
    assert cold.length < 30


def test_resample_keeps_endpoints_and_even_spacing():
    wp = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [0.0, 4.0]]])
    out = resample(wp, 5)
    torch.testing.assert_close(out[0, :, 1], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
    padded = resample(wp, 6, counts=torch.tensor([3]))
    torch.testing.assert_close(padded[0, :, 1], torch.tensor([0.0, 2.0, 4.0, 4.0, 4.0, 4.0]))


def test_line_init_has_straight_first_start_and_bowed_others():
    s, g = torch.tensor([[0.0, 0.0]]), torch.tensor([[10.0, 0.0]])
    wp = init_line(s, g, 3, 11, None, None)  # (1, 3, 11, 2)
    assert wp.shape == (1, 3, 11, 2)
    torch.testing.assert_close(wp[0, 0, :, 1], torch.zeros(11))
    assert wp[0, 1, 5, 1] > 0 > wp[0, 2, 5, 1]  # bowed to either side at the middle


def test_n_waypoints_fixes_the_count_of_an_unseeded_init_and_is_refused_elsewhere():
    # A fixed count has one meaning: the trajectories of an unseeded init without a coarse
    # stage (the note). A seeded route is refined at its own length and a coarse stage
    # sets the fine count from its path, so there it would be silently wrong: refused.
    from descentlab.core.config import ConfigError

    cfg = dataclasses.replace(PRESETS["line"], coarse_spacing=0, n_waypoints=25, n_starts=2,
                              fine_iters=40, repair_rounds=1)
    res = GradientPlanner(cfg).plan(note_map().occ, NOTE_START, NOTE_GOAL)
    assert len(res.waypoints) == 25
    for name, kw in (("default", {}), ("astar", {}), ("line", {})):
        with pytest.raises(ConfigError, match="must be 0") as err:
            dataclasses.replace(PRESETS[name], n_waypoints=30, **kw)
        assert err.value.field == "n_waypoints"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        PlannerConfig(init="nope")
    with pytest.raises(ValueError):
        PlannerConfig(spacing=0)


def test_stage_seconds_per_plan_is_the_mean_over_plans():
    # A split batch: each plan holds its own chunk's per-plan share; a stage a chunk did not
    # have counts as 0 for its plans.
    from descentlab.planning.bench import stage_seconds_per_plan
    from descentlab.planning.planner import PlanResult

    def res(**timings):
        one = np.zeros((1, 2))
        return PlanResult(one, one.astype(int), True, 0.0, timings=timings)

    out = stage_seconds_per_plan([res(init=1.0), res(init=3.0, descent=2.0), res(init=2.0)])
    assert out == pytest.approx({"descent": 2.0 / 3, "init": 2.0})


def _blocked_line_problem():
    """A wall across the straight line from start to goal, with a way round it."""
    occ = np.zeros((9, 9), dtype=bool)
    occ[4, :7] = True
    return occ, (1, 1), (7, 1)


def test_fallback_never_returns_an_invalid_seed_route():
    # refinement breaks validity (no steps: the straight line through the wall) and the seed
    # route, a route that never left its start, is no plan either: the result says so
    occ, s, g = _blocked_line_problem()
    (res,) = GradientPlanner(PRESETS["default"]).plan_batch(occ, [s], [g], iters=0,
                                                            routes=[np.array([s])])
    assert not res.valid and not res.fallback
    assert "seed route is invalid too" in res.reason and "not at the goal" in res.reason
    # the fallback itself: a broken plan becomes its seed route exactly when that is valid
    from types import SimpleNamespace

    from descentlab.planning.planner import PlanResult

    route = astar(occ, s, g).cells
    padded = np.concatenate([route, route[-1:].repeat(3, 0)])  # as the batch pads routes
    prob = SimpleNamespace(occ_b=occ, routes=[padded, np.array([s, (2, 2), g])])
    results = [PlanResult(np.array([s, g], float), np.array([s, g]), False, 6.0,
                          reason="step 0 is not a move to a neighbour") for _ in range(2)]
    GradientPlanner._fallback_to_route(prob, results, [s, s], [g, g])
    assert results[0].valid and results[0].fallback and results[0].length == cell_path_length(route)
    np.testing.assert_array_equal(results[0].cells, route)
    assert not results[1].valid and not results[1].fallback
    assert "seed route is invalid too" in results[1].reason


def test_a_route_that_stops_short_seeds_no_plan(monkeypatch):
    # the length split solves the routes first: one that did not reach its goal (a failed
    # solve) is reported invalid with the route's reason, the others are planned as usual
    import descentlab.planning.planner as planner_mod
    from descentlab.planning.potential import Route

    orig = planner_mod.potential_routes

    def fail_first(occ, starts, goals, cfg=None, device="cpu"):
        routes = orig(occ, starts, goals, cfg, device)
        routes[0] = Route(np.array([starts[0]]), False, "numerical plateau")
        return routes

    monkeypatch.setattr(planner_mod, "potential_routes", fail_first)
    occ, s, g = _blocked_line_problem()
    res = GradientPlanner(PRESETS["default"]).plan_batch(occ, [s, (0, 8)], [g, (8, 8)])
    assert not res[0].valid and "stops short" in res[0].reason and "plateau" in res[0].reason
    assert res[1].valid and invalid_reason(occ, res[1].cells, (0, 8), (8, 8)) is None


def test_plan_bench_with_harmonic_cg_on_a_map_of_several_components_reports_the_truth():
    # the review's repro: harmonic CG routes on a map with several free regions were NaN,
    # stopped at their start and came back valid with length 0 (fallbacks)
    from descentlab.planning.bench import plan_bench
    from descentlab.planning.grid import GridMap, Scenario
    from descentlab.planning.potential import GridGraph

    occ = random_map(12, 12, 0.4, 0).occ
    graph = GridGraph(occ)
    big = np.flatnonzero(graph.component == np.bincount(graph.component).argmax())
    rng = np.random.default_rng(0)
    pairs = [tuple(map(tuple, graph.cells[rng.choice(big, 2, replace=False)])) for _ in range(6)]
    scen = [Scenario(0, "r12", 12, 12, a, b, astar(occ, a, b).length) for a, b in pairs]
    cfg = dataclasses.replace(PRESETS["default"], potential="harmonic", solver="cg")
    out = plan_bench(GridMap(occ, "r12"), scen, "gradient", cfg)
    assert out["success_rate"] == 1.0 and out["fallbacks"] == 0
    for row in out["per_bucket"]:  # the exact any-angle optimum bounds every real path
        assert row["length"] >= row["anyangle_length"] - 1e-5 > 0
