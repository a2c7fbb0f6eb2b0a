"""plan_bench's own arguments: the batch size, the scenarios, scenarios without a length."""

from __future__ import annotations

import pytest

from descentlab.core.errors import InputError
from descentlab.planning.bench import plan_bench
from descentlab.planning.grid import Scenario, random_map

GRID = random_map(6, 8, 0.0, seed=0)  # open 6x8


def _scenario(start, goal, length) -> Scenario:
    return Scenario(0, "open.map", 8, 6, start=start, goal=goal, optimal_length=length)


def test_a_negative_batch_is_refused_by_name():
    with pytest.raises(InputError) as info:
        plan_bench(GRID, [_scenario((0, 0), (5, 7), 7 + 5 * 0.41421356)], "astar", batch=-1,
                   references=False)
    assert info.value.where == "batch" and "got -1" in info.value.message


def test_no_scenarios_is_refused_by_name():
    with pytest.raises(InputError) as info:
        plan_bench(GRID, [], "astar", references=False)
    assert info.value.where == "scenarios"


def test_a_scenario_without_a_positive_length_has_no_ratio():
    # Scenarios built in code skip the loader's checks: a zero length gives no ratio
    # (not a division by zero); the other scenario's ratio is the median.
    res = plan_bench(GRID, [_scenario((0, 0), (0, 0), 0.0), _scenario((0, 0), (0, 3), 3.0)],
                     "astar", references=False)
    assert [r["length_ratio"] for r in res["per_bucket"]] == [None, pytest.approx(1.0)]
    assert res["n"] == 2 and res["length_ratio_median"] == pytest.approx(1.0)
