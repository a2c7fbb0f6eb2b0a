"""The global potential: completeness of its ascent, agreement with direct sparse solves,
unreachable goals, and the refined plan it seeds (issue 10)."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from descentlab.planning.discretize import cell_path_length, invalid_reason
from descentlab.planning.grid import maze_map, random_map, rooms_map
from descentlab.planning.planner import PRESETS, GradientPlanner
from descentlab.planning.potential import (
    GridGraph,
    conjugate_gradient,
    route_potential,
    solve_potential,
)
from descentlab.planning.search import astar


def _free_pairs(occ, n, seed):
    rng = np.random.default_rng(seed)
    free = np.argwhere(~occ)
    idx = rng.choice(len(free), size=(n, 2))
    return [tuple(free[a]) for a, _ in idx], [tuple(free[b]) for _, b in idx]


@pytest.mark.parametrize("kind", ["screened", "harmonic"])
@pytest.mark.parametrize("family", ["random", "maze", "rooms"])
def test_ascent_reaches_every_reachable_goal_and_flags_the_rest(kind, family):
    """Completeness: on many seeded maps of three kinds, every route of steepest ascent is a
    legal 8-connected path from start to goal exactly when A* finds one."""
    reached = 0
    for seed in range(6):
        occ = {"random": lambda: random_map(40, 40, 0.3, seed).occ,
               "maze": lambda: maze_map(12, seed).occ,
               "rooms": lambda: rooms_map(41, 9, seed).occ}[family]()
        starts, goals = _free_pairs(occ, 12, seed)
        routes, _ = route_potential(GridGraph(occ), starts, goals, kind=kind)
        for s, g, r in zip(starts, goals, routes):
            ok = astar(occ, s, g) is not None
            assert r.reached == ok, (family, seed, s, g, r.reason)
            if ok:
                reached += 1
                assert invalid_reason(occ, r.cells, s, g) is None
            else:
                assert r.reason == "unreachable"
    assert reached >= 30  # the test did exercise reachable problems


def test_screened_potential_matches_a_direct_sparse_solve_and_cg():
    occ = random_map(30, 25, 0.25, seed=4).occ
    graph = GridGraph(occ)
    goal = int(np.flatnonzero(graph.component == np.bincount(graph.component).argmax())[0])
    t = 3.0
    # the reference: the whole system assembled independently, from the map itself
    free = np.argwhere(~occ)
    index = {tuple(c): k for k, c in enumerate(free)}
    rows, cols = [], []
    for (i, j), k in index.items():
        for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            if (i + di, j + dj) in index:
                rows.append(k)
                cols.append(index[(i + di, j + dj)])
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(free),) * 2)
    lap = sp.diags(np.asarray(adj.sum(1)).ravel()) - adj
    b = np.zeros(len(free))
    b[goal] = 1.0
    z_ref = spla.spsolve((sp.identity(len(free)) + t * lap).tocsc(), b)
    pot = solve_potential(graph, np.array([goal]), np.array([goal]), "screened", t, "direct")
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(pot.values[0, :-1], np.log(z_ref), rtol=1e-9, atol=1e-9)
    zt, iters = conjugate_gradient(graph.torch_operator(t, "cpu"),
                                   torch.as_tensor(b[:, None]), tol=1e-13)
    np.testing.assert_allclose(zt[:, 0].numpy(), z_ref, rtol=0, atol=1e-12)
    assert 0 < iters < 2000


def test_a_state_cost_keeps_the_ascent_complete_and_matches_a_direct_solve():
    # (diag(1 + q) + tL) z = e_g: the route still reaches every reachable goal for arbitrary
    # costs, and the direct and CG solves agree with an independent assembly
    for seed, occ in enumerate([random_map(40, 40, 0.3, 1).occ, maze_map(12, 2).occ, rooms_map(41, 9, 3).occ]):
        graph = GridGraph(occ)
        cost = np.random.default_rng(seed).random(graph.n) * 20
        starts, goals = _free_pairs(occ, 12, seed)
        routes, _ = route_potential(graph, starts, goals, cost=cost)
        for s, g, r in zip(starts, goals, routes):
            assert r.reached == (astar(occ, s, g) is not None), (seed, s, g, r.reason)
            if r.reached:
                assert invalid_reason(occ, r.cells, s, g) is None
    occ = random_map(30, 25, 0.25, seed=4).occ
    graph = GridGraph(occ)
    cost = np.random.default_rng(0).random(graph.n) * 3
    goal = int(np.flatnonzero(graph.component == np.bincount(graph.component).argmax())[0])
    b = np.zeros(graph.n)
    b[goal] = 1.0
    z_ref = spla.spsolve((sp.diags(1.0 + cost) + 2.0 * graph.laplacian).tocsc(), b)
    pot = solve_potential(graph, np.array([goal]), np.array([goal]), "screened", 2.0, "direct",
                          cost=cost)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(pot.values[0, :-1], np.log(z_ref), rtol=1e-9, atol=1e-9)
    zt, _ = conjugate_gradient(graph.torch_operator(2.0, "cpu", cost),
                               torch.as_tensor(b[:, None]), tol=1e-13)
    np.testing.assert_allclose(zt[:, 0].numpy(), z_ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="screened"):
        solve_potential(graph, np.array([goal]), np.array([goal]), "harmonic", cost=cost)
    # a graph keeps one factorisation per t with a cost (a navigator's costs change at every
    # replan while its walls may not), beside the cost-free one
    graph.screened_solver(2.0)
    for scale in (1.0, 2.0, 3.0):
        graph.screened_solver(2.0, cost * scale)
        graph.torch_operator(2.0, "cpu", cost * scale)
    assert sorted(k[1] is None for k in graph._screened) == [False, True]
    assert sum(k[2] is not None for k in graph._torch) == 1


def test_risk_routes_keep_to_cells_believed_free():
    # two equally long corridors round a block; the one believed less free (probability
    # 0.4, an unseen cell on a navigator's estimate) is avoided, whichever of the two it is
    from descentlab.core.config import ConfigError
    from descentlab.planning.trajectories import potential_routes

    prob = np.zeros((7, 11), dtype=np.float32)
    prob[2:5, 2:9] = 1.0  # the block
    start, goal = (3, 0), (3, 10)
    for risk in (5.0, 10.0):
        cfg = dataclasses.replace(PRESETS["nav"], risk=risk)
        for unseen, avoid, take in ((slice(0, 2), slice(0, 2), slice(5, 7)),
                                    (slice(5, 7), slice(5, 7), slice(0, 2))):
            est = prob.copy()
            est[unseen] = 0.4
            (route,) = potential_routes(est, [start], [goal], cfg)
            rows = route.cells[:, 0]
            assert route.reached and invalid_reason(est >= 0.5, route.cells, start, goal) is None
            assert not ((rows >= avoid.start) & (rows < avoid.stop)).any()
            assert ((rows >= take.start) & (rows < take.stop)).any()
    with pytest.raises(ConfigError, match="screened") as err:
        dataclasses.replace(PRESETS["nav"], potential="harmonic")
    assert err.value.where == "PlannerConfig.risk"


def test_harmonic_potential_solves_the_grounded_laplace_system():
    occ = random_map(20, 20, 0.2, seed=2).occ
    graph = GridGraph(occ)
    big = np.flatnonzero(graph.component == np.bincount(graph.component).argmax())
    s, g = int(big[3]), int(big[-5])
    pot = solve_potential(graph, np.array([s]), np.array([g]), "harmonic")
    phi = -pot.values[0, :-1]
    flux = graph.laplacian @ np.where(graph.component == graph.component[s], phi, 0.0)
    expect = np.zeros(graph.n)
    expect[s], expect[g] = 1.0, -1.0
    np.testing.assert_allclose(flux[big], expect[big], atol=1e-9)  # +1 in at s, −1 out at g
    assert phi[s] == phi[big].max() and phi[g] == phi[big].min()  # maximum principle


def test_cg_warm_start_from_the_previous_solution_needs_fewer_iterations():
    occ = random_map(40, 40, 0.2, seed=5).occ
    graph = GridGraph(occ)
    op = graph.torch_operator(4.0, "cpu")
    b = torch.zeros(graph.n, 1, dtype=torch.float64)
    b[10] = 1.0
    z, cold = conjugate_gradient(op, b, tol=1e-12)
    occ2 = occ.copy()
    occ2[20, 20:23] = ~occ2[20, 20:23]  # a small change of the map, as a replan sees
    graph2 = GridGraph(occ2)
    keep = np.array([graph.node(c) for c in graph2.cells])  # map the old solution over
    x0 = torch.where(torch.as_tensor(keep >= 0)[:, None], z[np.maximum(keep, 0)], 0.0)
    b2 = torch.zeros(graph2.n, 1, dtype=torch.float64)
    b2[graph2.node(graph.cells[10])] = 1.0
    _, warm = conjugate_gradient(graph2.torch_operator(4.0, "cpu"), b2, x0=x0, tol=1e-12)
    assert warm < cold


def test_screening_ladder_rescues_long_mazes_from_underflow():
    occ = maze_map(40, 1).occ  # 81x81, corridor routes of a few thousand cells
    graph = GridGraph(occ)
    s, g = (1, 1), (79, 79)
    routes, pot = route_potential(graph, [s], [g], kind="screened", screening=0.25)
    assert routes[0].reached
    assert pot.screening[0] > 0.25  # t had to grow for z(start) to be representable
    assert cell_path_length(routes[0].cells) == pytest.approx(astar(occ, s, g).length)


def test_refined_plan_is_valid_and_no_longer_than_its_route():
    for seed in range(2):
        occ = rooms_map(41, 9, seed).occ
        starts, goals = _free_pairs(occ, 4, seed)
        keep = [i for i, (s, g) in enumerate(zip(starts, goals))
                if s != g and astar(occ, s, g) is not None]
        starts, goals = [starts[i] for i in keep], [goals[i] for i in keep]
        for res, s, g in zip(GradientPlanner(PRESETS["default"]).plan_batch(occ, starts, goals),
                             starts, goals):
            assert res.valid and invalid_reason(occ, res.cells, s, g) is None
            assert res.route is not None
            assert res.length <= cell_path_length(res.route) + 1e-6


def test_unreachable_problems_in_a_batch_are_reported_not_raised():
    occ = np.zeros((10, 10), dtype=bool)
    occ[:, 5] = True  # two halves
    res = GradientPlanner(PRESETS["default"]).plan_batch(occ, [(1, 1), (1, 1)], [(8, 8), (8, 3)])
    assert not res[0].valid and res[0].reason == "unreachable"
    assert res[1].valid


def test_line_init_keeps_local_descent_only():
    """The research baseline (preset line) starts from straight lines and never searches:
    behind a wall with one far door it does not find the way round."""
    occ = np.zeros((30, 30), dtype=bool)
    occ[15, :28] = True  # a wall, the door at the far right
    cfg = dataclasses.replace(PRESETS["line"], n_starts=3, coarse_iters=60, fine_iters=60,
                              repair_rounds=1)
    res = GradientPlanner(cfg).plan(occ, (5, 3), (25, 3))
    assert not res.valid
    assert GradientPlanner(PRESETS["default"]).plan(occ, (5, 3), (25, 3)).valid


def _reachable_problems(size, density, seed, starts, goals):
    """A random map with the given ends freed, and the problems A* can solve on it."""
    occ = random_map(size, size, density, seed=seed).occ.copy()
    for c in starts + goals:
        occ[c] = False
    keep = [i for i in range(len(starts)) if astar(occ, starts[i], goals[i]) is not None]
    return occ, [starts[i] for i in keep], [goals[i] for i in keep]


def test_big_batches_are_split_by_length_and_keep_their_order():
    from descentlab.planning.planner import _length_chunks

    rng = np.random.default_rng(0)
    s, g = rng.integers(0, 400, (40, 2)), rng.integers(0, 400, (40, 2))
    cfg = dataclasses.replace(PRESETS["default"], batch_points=2000)
    chunks, _ = _length_chunks(s.tolist(), g.tolist(), cfg)
    assert sorted(sum(chunks, [])) == list(range(40)) and len(chunks) > 1
    est = np.linalg.norm(g - s, axis=1) / cfg.spacing + 2
    for c in chunks:
        assert len(c) == 1 or est[c].max() * len(c) <= 2000
    occ, starts, goals = _reachable_problems(40, 0.1, 2, [(0, 0), (39, 39), (0, 39)],
                                             [(39, 39), (0, 0), (20, 20)])
    split = GradientPlanner(dataclasses.replace(PRESETS["default"], batch_points=50)).plan_batch(
        occ, starts, goals)
    for res, s0, g0 in zip(split, starts, goals):  # results come back in the caller's order
        assert tuple(res.cells[0]) == s0 and tuple(res.cells[-1]) == g0 and res.valid


def test_a_split_batch_solves_each_problem_once(monkeypatch):
    import descentlab.planning.potential as P

    calls = []
    orig = P.route_potential
    monkeypatch.setattr(P, "route_potential",
                        lambda graph, starts, goals, **kw: calls.append(len(starts))
                        or orig(graph, starts, goals, **kw))
    occ = np.zeros((60, 60), dtype=bool)
    starts, goals = [(0, 0), (5, 5), (59, 0)], [(59, 59), (50, 40), (0, 59)]
    res = GradientPlanner(dataclasses.replace(PRESETS["default"], batch_points=120)).plan_batch(
        occ, starts, goals)
    assert all(r.valid for r in res) and sum(calls) == 3


@pytest.mark.parametrize("batch_points", [120, 0])
def test_plan_seconds_count_the_potential_solve(batch_points):
    # The length split solves the potential before planning each chunk: that time (on a map
    # seen for the first time: the graph and its factorisation) belongs to the plans. Their
    # seconds add up to the call's wall-clock time, an unreachable problem's included, and
    # the stages cover the plan. Each case has its own map (nothing cached before the call).
    import time

    occ, starts, goals = _reachable_problems(150, 0.15, 11 + (batch_points == 0),
                                             [(0, 0), (5, 5), (149, 0)],
                                             [(149, 149), (60, 50), (0, 149)])
    occ[69:74, 69:74] = True
    occ[71, 71] = False  # a walled-in cell: unreachable
    starts, goals = starts + [(0, 0)], goals + [(71, 71)]
    cfg = dataclasses.replace(PRESETS["default"], batch_points=batch_points, fine_iters=2)
    t0 = time.perf_counter()
    res = GradientPlanner(cfg).plan_batch(occ, starts, goals)
    wall = time.perf_counter() - t0
    assert res[-1].reason == "unreachable" and all(r.valid for r in res[:-1])
    total = sum(r.seconds for r in res)
    assert 0.97 * wall <= total <= wall
    stages = sum(sum(r.timings.values()) for r in res)
    assert stages >= 0.8 * total  # the stages cover the plan: setup, init, descent, check


def _component_problems(graph, per_component, seed):
    """Problems (start, goal cells) inside each component of ≥ 2 cells, ``per_component`` each."""
    rng = np.random.default_rng(seed)
    starts, goals = [], []
    for c in np.unique(graph.component):
        nodes = np.flatnonzero(graph.component == c)
        if len(nodes) < 2:
            continue
        for _ in range(per_component):
            a, b = rng.choice(nodes, 2, replace=False)
            starts.append(tuple(graph.cells[a]))
            goals.append(tuple(graph.cells[b]))
    return starts, goals


@pytest.mark.parametrize("seed", range(4))
def test_batched_harmonic_cg_on_a_map_of_several_components_matches_the_direct_solve(seed):
    # Several free regions (isolated cells among them): a component with neither start nor
    # goal has no Dirichlet condition unless it is grounded, and CG kept iterating columns
    # that had converged until they reached NaN. The batch must equal the direct solve and
    # each problem solved alone, and every route must reach its goal.
    occ = random_map(12, 12, 0.4, seed).occ
    graph = GridGraph(occ)
    assert len(np.unique(graph.component)) >= 3
    starts, goals = _component_problems(graph, 4, seed)
    s = np.array([graph.node(c) for c in starts])
    g = np.array([graph.node(c) for c in goals])
    cg = solve_potential(graph, s, g, "harmonic", solver="cg").values[:, :-1]
    direct = solve_potential(graph, s, g, "harmonic", solver="direct").values[:, :-1]
    assert np.isfinite(cg).all()
    np.testing.assert_allclose(cg, direct, rtol=0, atol=1e-8)
    alone = np.concatenate([solve_potential(graph, s[[i]], g[[i]], "harmonic", solver="cg")
                            .values[:, :-1] for i in range(len(s))])
    np.testing.assert_allclose(cg, alone, rtol=0, atol=1e-8)
    routes, _ = route_potential(graph, starts, goals, kind="harmonic", solver="cg")
    for r, a, b in zip(routes, starts, goals):
        assert r.reached and invalid_reason(occ, r.cells, a, b) is None, r.reason


@pytest.mark.filterwarnings("ignore:Sparse:UserWarning")  # torch: CSR is in beta
def test_cg_stops_updating_a_column_once_it_has_converged():
    # On the ungrounded Laplacian of one component (singular, consistent right-hand sides)
    # iterating a converged column drifts along the constant and blew up to NaN while the
    # other columns still ran; stopped columns keep their converged value.
    occ = random_map(12, 12, 0.4, 0).occ
    graph = GridGraph(occ)
    big = np.flatnonzero(graph.component == np.bincount(graph.component).argmax())
    m = graph.laplacian
    op = torch.sparse_csr_tensor(torch.from_numpy(m.indptr), torch.from_numpy(m.indices),
                                 torch.from_numpy(m.data), size=m.shape, dtype=torch.float64)
    b = torch.zeros(graph.n, 3, dtype=torch.float64)
    for col, (s, g) in enumerate([(big[0], big[1]), (big[0], big[-1]), (big[5], big[-3])]):
        b[s, col], b[g, col] = 1.0, -1.0
    x, _ = conjugate_gradient(op, b, tol=1e-12)
    assert torch.isfinite(x).all()
    assert ((b - op @ x).norm(dim=0) <= 1e-11 * b.norm(dim=0)).all()
