"""The navigation loop: warm start, execution on the true map, whole runs, nav-bench, CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from descentlab.cli.main import main
from descentlab.planning.discretize import cell_path_length, invalid_reason
from descentlab.planning.mapping import make_mapper
from descentlab.planning.nav_bench import length_ratio_between, random_problem, summarise
from descentlab.planning.navigation import (
    NavConfig,
    execute,
    make_navigator,
    plan_blocked,
    run_loop,
    shift_warm_start,
)
from descentlab.planning.search import astar, octile_distance
from descentlab.planning.sensors import RaySensorConfig, make_sensor


def test_warm_start_shifts_by_one():
    wp = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.5], [3.0, 3.0]])
    out = shift_warm_start(wp, (1, 1))  # the bot moved to the second waypoint
    np.testing.assert_array_equal(out, [[1, 1], [2, 2.5], [3, 3], [3, 3]])
    assert out.shape == wp.shape
    # off the plan: shift to the nearest waypoint, then pin the first one on the bot
    np.testing.assert_array_equal(shift_warm_start(wp, (2, 3)), [[2, 3], [3, 3], [3, 3], [3, 3]])
    # not moved: no shift
    np.testing.assert_array_equal(shift_warm_start(wp, (0, 0)), wp)
    assert shift_warm_start(wp, (0, 0)) is not wp


def test_execute_stops_in_front_of_a_real_wall():
    true = np.zeros((3, 5), dtype=bool)
    true[0, 2] = True
    est = np.zeros((3, 5))  # the bot has not seen the wall
    plan = np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    move = execute(true, est, (0, 0), plan, k=3)
    assert move.cells == [(0, 1)] and move.bumped == [(0, 2)] and move.stopped
    # a diagonal step past a real wall's corner is a bump too, nothing is entered
    move = execute(true, est, (1, 1), np.array([[1, 1], [0, 2]]), k=3)
    assert move.cells == [] and move.bumped == [(0, 2)]
    move = execute(true, est, (1, 2), np.array([[1, 2], [0, 3]]), k=3)
    assert move.cells == [] and move.bumped == [(0, 2)]


def test_execute_respects_k_and_the_estimate():
    true = np.zeros((1, 8), dtype=bool)
    plan = np.array([[0, j] for j in range(8)])
    move = execute(true, np.zeros((1, 8)), (0, 2), plan, k=2)  # starts mid-plan
    assert move.cells == [(0, 3), (0, 4)] and not move.bumped and not move.stopped
    est = np.zeros((1, 8))
    est[0, 4] = 0.7  # believed blocked: stop before it, no bump
    move = execute(true, est, (0, 2), plan, k=5)
    assert move.cells == [(0, 3)] and not move.bumped and move.stopped


def test_plan_blocked_sees_walls_and_cut_corners():
    occ = np.zeros((3, 3))
    cells = np.array([[0, 0], [1, 1], [2, 2]])
    assert not plan_blocked(occ, cells)
    occ[0, 1] = 0.6  # beside the first diagonal step
    assert plan_blocked(occ, cells)
    occ[0, 1] = 0.4
    assert not plan_blocked(occ, cells)
    occ[2, 2] = 0.5
    assert plan_blocked(occ, cells)


def _run(occ, start, goal, planner="astar", sensor="ray", radius=4.0, flip=0.0,
         mapper="logodds", seed=0, planner_config=None, **nav_kw):
    nav = NavConfig(**nav_kw)
    return run_loop(occ, start, goal,
                    make_sensor(sensor, RaySensorConfig(radius=radius, flip_prob=flip)
                                if sensor == "ray" else None),
                    make_mapper(mapper, occ.shape),
                    make_navigator(planner, nav, planner_config, "cpu", seed), nav,
                    rng=np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(4))
def test_executor_never_enters_an_obstacle(seed):
    prob = random_problem(seed, size=24, density=0.25)
    occ = prob.grid.occ
    res = _run(occ, prob.start, prob.goal, radius=3.0, flip=0.05, seed=seed, k=4)
    assert res.success, res.reason
    # every step of the executed path: a free cell, a neighbour, no cut corner (true map)
    assert invalid_reason(occ, res.path, prob.start, prob.goal) is None
    assert res.travelled >= prob.optimal - 1e-9
    assert res.length_ratio == pytest.approx(res.travelled / prob.optimal)


def test_open_map_is_one_plan_and_optimal():
    occ = np.zeros((12, 12), dtype=bool)
    res = _run(occ, (0, 0), (11, 7), k=3)
    assert res.success and res.replans == 1 and res.bumps == 0
    assert res.travelled == pytest.approx(octile_distance((0, 0), (11, 7)))
    assert res.map_accuracy_seen == 1.0


def test_hidden_wall_forces_a_replan_and_a_detour():
    occ = np.zeros((12, 12), dtype=bool)
    occ[6, 0:11] = True  # a wall across the map with a gap at column 11
    res = _run(occ, (0, 0), (11, 0), radius=3.0, k=2)
    assert res.success and res.replans >= 2
    assert invalid_reason(occ, res.path, (0, 0), (11, 0)) is None
    assert res.travelled > 11  # had to walk round the wall


def test_gradient_navigation_reaches_the_goal_on_a_small_map():
    from descentlab.planning.planner import PRESETS

    occ = np.zeros((16, 16), dtype=bool)
    occ[8, 3:13] = True  # a wall across the straight line, seen only from 4 cells away
    occ[3:5, 6:8] = True
    cfg = dataclasses.replace(PRESETS["default"], n_starts=4, coarse_iters=100, fine_iters=100)
    res = _run(occ, (1, 8), (14, 8), planner="gradient", radius=4.0, k=3, planner_config=cfg)
    assert res.success, res.reason
    assert invalid_reason(occ, res.path, (1, 8), (14, 8)) is None
    assert res.replans >= 2 and res.length_ratio < 1.4


def test_a_free_warm_start_is_refined_alone_and_a_blocked_one_is_replanned_afresh():
    occ = np.zeros((16, 16))
    nav = make_navigator("gradient", NavConfig())
    first = nav.plan(occ, (1, 8), (14, 8), None)
    assert first.cold and first.valid
    warm = shift_warm_start(first.waypoints, (1, 8))
    again = nav.plan(occ, (1, 8), (14, 8), warm)  # nothing new: the warm start alone
    assert not again.cold and again.valid
    occ[8, 3:13] = 1.0  # a wall seen across the plan: the warm start is blocked
    detour = nav.plan(occ, (1, 8), (14, 8), warm)
    assert detour.cold and detour.valid
    assert invalid_reason(occ >= 0.5, detour.cells, (1, 8), (14, 8)) is None


def test_no_plan_on_a_noisy_estimate_waits_and_observes_again():
    from descentlab.planning.sensors import Observation

    class LyingOnce:
        """A ray sensor whose first reading shows walls all round the bot."""

        def __init__(self):
            self.inner, self.calls = make_sensor("ray", RaySensorConfig(radius=3)), 0

        def observe(self, occ, pos, rng):
            obs = self.inner.observe(occ, pos, rng)
            self.calls += 1
            if self.calls > 1:
                return obs
            value = obs.weight.copy()
            r, c = pos[0] - obs.origin[0], pos[1] - obs.origin[1]
            value[r, c] = 0.0  # the bot's own cell reads free
            return Observation(obs.origin, obs.weight, value, obs.seen)

    occ = np.zeros((8, 8), dtype=bool)
    nav = NavConfig(k=2)
    res = run_loop(occ, (0, 0), (7, 7), LyingOnce(), make_mapper("logodds", occ.shape),
                   make_navigator("astar", nav), nav, rng=np.random.default_rng(0))
    # step 1: boxed in on the estimate, no plan, stay; step 2: a true reading clears it
    assert res.success and res.steps == 1 + 4 and res.path[0].tolist() == [0, 0]
    assert res.travelled == pytest.approx(octile_distance((0, 0), (7, 7)))
    nav1 = NavConfig(k=2, stall_limit=1)
    res = run_loop(occ, (0, 0), (7, 7), LyingOnce(), make_mapper("logodds", occ.shape),
                   make_navigator("astar", nav1), nav1, rng=np.random.default_rng(0))
    assert not res.success and res.reason == "no_plan" and res.steps == 1


def test_random_problem_is_solvable_and_far():
    for seed in range(6):
        a, b = random_problem(seed), random_problem(seed)
        assert a.start == b.start and a.goal == b.goal and np.array_equal(a.grid.occ, b.grid.occ)
        assert not a.grid.occ[a.start] and not a.grid.occ[a.goal]
        assert math.dist(a.start, a.goal) > 0.8 * 63 * math.sqrt(2)
        assert a.optimal >= octile_distance(a.start, a.goal)
        assert 0.17 < a.grid.occ.mean() < 0.23


def test_summaries_and_the_length_ratio_between_planners():
    occ = np.zeros((10, 10), dtype=bool)
    occ[5, 0:9] = True
    runs = [_run(occ, (0, 0), (9, 0), radius=r, k=2) for r in (2.0, 9.0)]
    s = summarise(runs)
    assert s["success_rate"] == 1.0 and s["n"] == 2
    assert s["length_ratio_mean"] == pytest.approx(np.mean([r.length_ratio for r in runs]))
    assert s["bumps_mean"] == pytest.approx(np.mean([r.bumps for r in runs]))
    assert s["map_accuracy_seen"] == 1.0
    failed = dataclasses.replace(runs[0], success=False, reason="stuck")
    # mean travelled over mean travelled, on the problems both solved only
    assert length_ratio_between(runs, runs[::-1]) == pytest.approx(1.0)
    assert length_ratio_between([failed, runs[1]], [runs[0], runs[0]]) == pytest.approx(
        runs[1].travelled / runs[0].travelled)


def test_the_bootstrap_interval_of_the_length_ratio():
    from descentlab.planning.nav_bench import ratio_interval

    a = np.array([30.0, 50.0, 80.0, 120.0])
    assert ratio_interval(a, a / 1.1) == pytest.approx((1.1, 1.1))  # a fixed ratio: no spread
    lo, hi = ratio_interval([10.0, 10.0, 10.0, 50.0], [10.0] * 4)  # one long detour
    assert lo == pytest.approx(1.0) and hi > 2.0  # every resample without it is at 1
    assert ratio_interval([1.0], [2.0], seed=3) == (0.5, 0.5)
    assert all(math.isnan(v) for v in ratio_interval([], []))
    # coverage: pairs whose true ratio of means is 1.2 (b ~ U(20, 100), a = 1.2·b·noise with
    # E[noise] = 1); the 95 % interval of 40 pairs should hold 1.2 about 95 % of the time
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        b = rng.uniform(20, 100, 40)
        a = 1.2 * b * rng.lognormal(-0.02, 0.2, 40)  # E[lognormal(mu, s)] = exp(mu + s²/2) = 1
        lo, hi = ratio_interval(a, b, n_boot=2000, seed=i)
        hits += lo <= 1.2 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_note_preset_reaches_its_goal(tmp_path):
    out = tmp_path / "note.json"
    assert main(["navigate", "--preset", "note", "--out", "", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["sensor"] == "soft" and res["mapper"] == "note" and res["map"] == "note"
    assert res["summary"]["success"] is True
    path = np.array(res["path"])
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START, note_map

    assert invalid_reason(note_map().occ, path, NOTE_START, NOTE_GOAL) is None


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    walled = tmp_path / "walled.txt"
    walled.write_text("....\n.@@@\n.@..\n.@@@\n")  # (2, 2) enclosed
    cases = [
        (["--map", str(walled), "--start", "0,0", "--goal", "2,2"], "unreachable"),
        (["--start", "1,5"], "obstacle"),
        (["--goal", "40,3"], "outside"),
        (["--radius", "0"], "radius: must be > 0"),
        (["--map", str(walled)], "--start"),
    ]
    for argv, needle in cases:
        code = main(["navigate", "--planner", "astar", "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (argv, err)
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_gif_has_one_frame_per_step_and_the_figure_is_written(tmp_path):
    from PIL import Image

    from descentlab.planning.viz_nav import plot_final, save_gif

    occ = np.zeros((10, 10), dtype=bool)
    occ[5, 0:8] = True
    nav = NavConfig(k=2)
    mapper = make_mapper("logodds", occ.shape)
    res = run_loop(occ, (0, 0), (9, 0), make_sensor("ray", RaySensorConfig(radius=3)), mapper,
                   make_navigator("astar", nav), nav, rng=np.random.default_rng(0), record=True)
    assert res.success and len(res.frames) == res.steps
    gif = save_gif(occ, res, (0, 0), (9, 0), tmp_path / "nav.gif")
    with Image.open(gif) as im:
        assert im.n_frames == res.steps
    png = plot_final(occ, res, (0, 0), (9, 0), tmp_path / "final.png", prob=mapper.prob,
                     seen=mapper.seen)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_pooled_summary_uses_the_same_definitions_as_each_map():
    # The "all" row is computed from every run (not from per-map summaries): its step-time
    # median is the median over every step, so it lies between the maps' medians, and its
    # success rate is the run-weighted mean of theirs.
    from descentlab.planning.mapping import LogOddsConfig
    from descentlab.planning.nav_bench import BenchSetup, random_problems, run_groups
    from descentlab.planning.navigation import NavConfig
    from descentlab.planning.sensors import RaySensorConfig

    setup = BenchSetup("ray", RaySensorConfig(), "logodds", LogOddsConfig(), NavConfig())
    groups = {"a": random_problems(2, 0, size=16), "b": random_problems(1, 7, size=16)}
    seen = []
    out = run_groups(groups, ["astar"], setup, on_run=lambda *a: seen.append(a[:3]))
    assert seen == [("a", "astar", 0), ("a", "astar", 1), ("b", "astar", 0)]
    per = {k: v["summary"]["astar"] for k, v in out["per_map"].items()}
    pooled = out["summary"]["astar"]
    steps = [r["time_per_step_ms_median"] for r in per.values()]
    assert min(steps) <= pooled["time_per_step_ms_median"] <= max(steps)
    assert pooled["n"] == 3 and len(out["runs"]) == 3
    assert pooled["success_rate"] == pytest.approx(
        (2 * per["a"]["success_rate"] + per["b"]["success_rate"]) / 3)
    assert {r["maps"] for r in out["runs"]} == {"a", "b"}


def test_backward_astar_plans_as_short_with_ties_broken_from_the_goal():
    # Same length on every estimate, another of the equally short paths: on open ground
    # forward A* takes the diagonals first, the backward search the straight moves first.
    nav = NavConfig()
    fwd, back = make_navigator("astar", nav), make_navigator("astar_back", nav)
    open_ = np.zeros((6, 10))
    a, b = fwd.plan(open_, (0, 0), (5, 9), None), back.plan(open_, (0, 0), (5, 9), None)
    assert a.cells[0].tolist() == b.cells[0].tolist() == [0, 0]
    assert a.cells[-1].tolist() == b.cells[-1].tolist() == [5, 9]
    assert a.cells[1].tolist() == [1, 1] and b.cells[1].tolist() == [0, 1]
    for seed in range(5):
        prob = random_problem(seed, size=24, density=0.25)
        est = prob.grid.occ.astype(float)
        pa = fwd.plan(est, prob.start, prob.goal, None)
        pb = back.plan(est, prob.start, prob.goal, None)
        assert invalid_reason(prob.grid.occ, pb.cells, prob.start, prob.goal) is None
        assert cell_path_length(pb.cells) == pytest.approx(cell_path_length(pa.cells))
    walled = np.ones((3, 3))
    walled[0, 0] = 0
    assert back.plan(walled, (0, 0), (2, 2), None) is None


def test_nav_bench_compares_the_gradient_with_every_baseline():
    from descentlab.planning.mapping import LogOddsConfig
    from descentlab.planning.nav_bench import BenchSetup, random_problems, run_bench

    setup = BenchSetup("ray", RaySensorConfig(radius=3), "logodds", LogOddsConfig(),
                       NavConfig())
    runs: dict[str, list] = {}
    out = run_bench(random_problems(3, 0, size=16), ["gradient", "astar", "astar_back"],
                    setup, results=runs)
    assert sorted(k for k in out if k.startswith("gradient_vs_")) == [
        "gradient_vs_astar_back_length", "gradient_vs_astar_back_length_ci95",
        "gradient_vs_astar_length", "gradient_vs_astar_length_ci95"]
    for base in ("astar", "astar_back"):
        both = [(g.travelled, b.travelled) for g, b in zip(runs["gradient"], runs[base])
                if g.success and b.success]
        assert both
        assert out[f"gradient_vs_{base}_length"] == pytest.approx(
            sum(g for g, _ in both) / sum(b for _, b in both))
        lo, hi = out[f"gradient_vs_{base}_length_ci95"]
        assert lo <= out[f"gradient_vs_{base}_length"] <= hi


def test_unseen_cells_get_the_seen_density_capped_at_unknown():
    from descentlab.planning.navigation import planning_map

    class Mapper:
        prob = np.array([[0.9, 0.1, 0.2, 0.0], [0.8, 0.0, 0.0, 0.0]])
        seen = np.array([[True, True, True, False], [True, True, False, False]])

    # 5 seen cells, mean obstacle probability 2.0 / 5 = 0.4
    out = planning_map(Mapper, 0.3)
    assert out[0, 3] == out[1, 2] == 0.3 and out[0, 0] == 0.9  # the cap
    out = planning_map(Mapper, 0.45)
    assert out[0, 3] == pytest.approx(0.4) and out[1, 1] == 0.0
    assert planning_map(Mapper, 0.45, from_seen=False)[0, 3] == 0.45  # off: the constant
    assert planning_map(Mapper, -1.0)[0, 3] == 0.0  # the mapper's own
    assert planning_map(Mapper, 0.6)[0, 3] == 0.6  # unseen = walls stays so

    class Open:  # nothing but free readings: unseen cells as likely free as seen ones
        prob = np.where(np.eye(3, dtype=bool), 0.018, 0.0)
        seen = np.eye(3, dtype=bool)

    assert planning_map(Open, 0.4)[0, 1] == pytest.approx(0.018)

    class Blind:
        prob, seen = np.zeros((2, 2)), np.zeros((2, 2), dtype=bool)

    assert (planning_map(Blind, 0.4) == 0.4).all()  # nothing seen: the configured value


def test_generated_problem_sets_are_seeded_and_long_enough():
    from descentlab.planning.nav_bench import PROBLEM_SETS

    for name in ("random96", "maze81", "rooms121"):
        make = PROBLEM_SETS[name][1]
        probs = make(2, 5, 30.0)
        assert len(probs) == 2 and probs[0].label != probs[1].label
        for p in probs:
            found = astar(p.grid.occ, p.start, p.goal)
            assert found is not None and found.length == p.optimal >= 30.0
        again = make(2, 5, 30.0)
        assert [(p.start, p.goal) for p in again] == [(p.start, p.goal) for p in probs]



def test_nav_bench_json_records_every_setting(tmp_path):
    out = tmp_path / "nb.json"
    assert main(["nav-bench", "--maps", "random96", "--n", "1", "--planners", "astar",
                 "astar_back", "--planner-risk", "3", "--unknown-from-seen", "false",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    cfg = res["config"]
    assert cfg["maps"] == ["random96"] and cfg["planner_config"]["risk"] == 3.0
    assert cfg["nav"]["unknown_from_seen"] is False and cfg["sensor_config"]["radius"] > 0
    assert set(res["summary"]) == {"astar", "astar_back"}
    assert not any(k.startswith("gradient_vs_") for k in res)  # no gradient run: no ratio


def test_generated_problems_that_cannot_be_built_name_their_argument():
    from descentlab.core.errors import InputError
    from descentlab.planning.grid import GridMap, maze_map
    from descentlab.planning.nav_bench import RANDOM_SIZE_RANGE, pair_problem

    def where(fn, *args):
        with pytest.raises(InputError) as info:
            fn(*args)
        return info.value.where

    assert where(random_problem, 0, 4, 0.95) == "density"  # no free cell at all
    assert where(random_problem, 0, RANDOM_SIZE_RANGE[1] + 1) == "size"  # before any memory
    assert where(random_problem, 0, 200000) == "size"
    assert where(random_problem, 0, 3) == "size"
    assert where(random_problem, 0, 16, 1.0) == "density"
    maze = maze_map(40, 0)
    assert where(pair_problem, maze, 0, 1e9) == "min_length"  # longer than any path there
    assert where(pair_problem, maze, 0, math.nan) == "min_length"
    # 3x3 free: no two cells are 3 apart (the corners are 2·√2), though 8 cells could hold a
    # path that long: every random pair is tried, then the error names min_length
    assert where(pair_problem, GridMap(np.zeros((3, 3), bool), "open3"), 0, 3.0) == "min_length"
    assert where(pair_problem, GridMap(np.ones((3, 3), bool), "walls"), 0, 1.0) == "grid"


@pytest.mark.parametrize("argv, words", [
    (["navigate", "--map", "random", "--size", "4", "--density", "0.95"],
     "--density: the random 4x4 map of seed 0 at this density has no free cell"),
    (["navigate", "--map", "random", "--size", "200000"], "--size: must be in [4, 1024]"),
    (["nav-bench", "--maps", "maze81", "--n", "1", "--min-length", "1e9", "--planners",
      "astar"], "--min-length: no path on map maze81-s0 is 1e+09 long"),
    (["nav-bench", "--n", "1", "--planners", "astar", "astar"],
     "--planners: 'astar' named more than once"),
])
def test_cli_problems_that_cannot_be_built_are_one_line_exit_2(tmp_path, capsys, argv, words):
    out = tmp_path / "r.json"
    assert main([*argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_a_planner_named_twice_is_refused():
    # It would run twice on every problem and count each twice in its summary.
    from descentlab.core.errors import InputError
    from descentlab.planning.mapping import LogOddsConfig
    from descentlab.planning.nav_bench import BenchSetup, run_bench, run_groups

    setup = BenchSetup("ray", RaySensorConfig(), "logodds", LogOddsConfig(), NavConfig())
    probs = [random_problem(0, 12)]
    for run in (lambda: run_bench(probs, ["astar", "astar_back", "astar"], setup),
                lambda: run_groups({"a": probs}, ["astar", "astar"], setup)):
        with pytest.raises(InputError) as info:
            run()
        assert info.value.where == "planners" and "'astar' named more than once" in str(info.value)


def test_harmonic_with_the_default_planner_preset_says_how(capsys):
    # The default (nav) preset's risk 10 needs the screened potential; the user never typed
    # --planner-risk, so the error says where the value comes from and what to pass.
    from descentlab.cli.navigation import _planner_config, build_navigate_parser

    assert main(["navigate", "--planner-potential", "harmonic", "--out", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--planner-risk 0.0" in err[0], err
    parser = build_navigate_parser()
    args = parser.parse_args(["--planner-potential", "harmonic"])
    with pytest.raises(ValueError) as info:
        _planner_config(args)
    assert ("risk 10.0 comes from the planner preset 'nav': pass --planner-risk 0.0"
            in str(info.value))
    cfg = _planner_config(parser.parse_args(["--planner-potential", "harmonic",
                                             "--planner-risk", "0"]))
    assert cfg.potential == "harmonic" and cfg.risk == 0 and cfg.fine_iters == 10  # nav's


def test_navigation_help_comes_from_the_registries(monkeypatch):
    from descentlab.cli.navigation import build_navigate_parser
    from descentlab.planning.mapping import MAPPERS
    from descentlab.planning.navigation import NAV_PRESETS, NAVIGATORS
    from descentlab.planning.sensors import SENSORS

    @dataclasses.dataclass
    class ToyConfig:
        """A toy config of this test."""

    class ToyNavigator:
        """A toy navigator of this test."""

    monkeypatch.setitem(SENSORS, "toysensor", (ToyConfig, object))
    monkeypatch.setitem(MAPPERS, "toymapper", (ToyConfig, object))
    monkeypatch.setitem(NAVIGATORS, "toynav", ToyNavigator)
    monkeypatch.setitem(NAV_PRESETS, "toypreset", {"sensor": "toysensor", "nav": {"k": 2}})
    helps = {a.option_strings[0]: a.help for a in build_navigate_parser()._actions
             if a.option_strings}
    assert "toysensor: A toy config of this test" in helps["--sensor"]
    assert "preset toypreset: toysensor" in helps["--sensor"]
    assert "toymapper: A toy config of this test" in helps["--mapper"]
    assert "toynav: A toy navigator of this test" in helps["--planner"]
    assert "toypreset: sensor toysensor, k 2" in helps["--preset"]
    for flag, registry in (("--sensor", SENSORS), ("--mapper", MAPPERS),
                           ("--planner", NAVIGATORS), ("--preset", NAV_PRESETS)):
        assert all(f"{name}: " in helps[flag] for name in registry), flag


@pytest.mark.parametrize("extra, flag", [(["--planner-lr", "0.5"], "--planner-lr"),
                                         (["--planner-preset", "line"], "--planner-preset")])
def test_a_baseline_navigator_refuses_gradient_planner_flags(extra, flag, capsys):
    assert main(["navigate", "--preset", "note", "--planner", "astar", "--out", "", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"descentlab navigate: error: --planner: planner 'astar' takes no planner "
                   f"options, got {flag}"]
