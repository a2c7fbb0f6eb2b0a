"""The planning wing's Python API (issue 10 item 6): from a plain session, typed results,
errors that name arguments, a full-size plan."""

import subprocess
import sys

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.planning import PlanResult, navigate, plan, plan_many
from descentlab.planning.grid import random_map


def test_api_runs_from_a_plain_python_session():
    code = ("from descentlab.planning import load_map, plan, navigate\n"
            "r = plan(load_map('note'), (0, 0), (19, 10))\n"
            "n = navigate(load_map('note'), (0, 0), (19, 10), sensor='ray')\n"
            "print(r.valid, r.length <= r.astar_length, r.anyangle_length <= r.length + 1e-9,"
            " n.success)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True"]


def test_plan_returns_a_typed_result_with_references():
    res = plan("note", (0, 0), (19, 10))
    assert isinstance(res, PlanResult) and res.valid and res.preset == "default"
    assert res.anyangle_length <= res.length <= 1.02 * res.anyangle_length
    assert res.length < res.astar_length  # any-angle descent beats the octile optimum here
    d = res.to_dict()
    assert d["cells"][0] == [0, 0] and d["cells"][-1] == [19, 10]
    assert set(res.timings) >= {"init", "descent", "check"}


def test_errors_name_the_argument_not_a_flag():
    with pytest.raises(InputError, match="obstacle") as e:
        plan("note", (1, 5), (19, 10))  # rows 1-5 of column 5 are the note's first wall
    assert e.value.where == "start"
    occ = np.zeros((8, 8), dtype=bool)
    occ[:, 4] = True
    with pytest.raises(InputError, match="cannot be reached") as e:
        plan(occ, (0, 0), (0, 7))
    assert e.value.where == "goal"
    with pytest.raises(InputError) as e:
        plan("note", (0, 0), (19, 10), fine_itres=3)
    assert e.value.where == "fine_itres" and "--" not in str(e.value)
    with pytest.raises(InputError) as e:
        plan("note", (0, 0), (19, 10), planner="gradient-astar-init", preset="note")
    assert e.value.where == "preset"
    for bad in ("0,0", (0.9, 0.9), (0, 0, 1), (float("nan"), 0), None):
        with pytest.raises(InputError, match="pair of integers") as e:
            plan("note", bad, (19, 10))
        assert e.value.where == "start"
    assert plan("note", (0.0, np.int64(0)), (19, 10), references=False).valid  # integral


def test_init_names_its_preset_and_the_recorded_preset_is_the_one_run():
    from descentlab.planning import PlannerConfig

    res = plan("note", (0, 0), (19, 10), init="line", coarse_iters=50, fine_iters=50)
    assert res.preset == "line" and res.config.init == "line"
    seeded = plan("note", (0, 0), (19, 10), planner="gradient-astar-init")
    assert seeded.preset == "astar" and seeded.config.init == "astar"
    own = plan("note", (0, 0), (19, 10), config=PlannerConfig(fine_iters=5), references=False)
    assert own.preset is None and own.config.fine_iters == 5  # a config of its own: no preset
    # what would not run as recorded is refused, naming the argument
    for kw, where in ((dict(preset="note", config=PlannerConfig()), "config"),
                      (dict(config=PlannerConfig(), fine_itres=3), "fine_itres"),
                      (dict(planner="gradient-astar-init", init="line"), "init")):
        with pytest.raises(InputError) as e:
            plan("note", (0, 0), (19, 10), **kw)
        assert e.value.where == where


def test_devices_are_resolved_and_batches_checked_like_every_argument():
    res = plan("note", (0, 0), (19, 10), device="auto", references=False)
    assert res.valid  # "auto" is the CPU here (or the GPU where there is one)
    assert navigate(preset="note", device="auto").success
    for call in (lambda: plan("note", (0, 0), (19, 10), device="mps"),
                 lambda: navigate(preset="note", device="mps")):
        with pytest.raises(InputError) as e:
            call()
        assert e.value.where == "device"
    with pytest.raises(InputError, match="1 goals for 3 starts") as e:
        plan_many("note", [(0, 0), (5, 0), (3, 3)], [(19, 10)])
    assert e.value.where == "goals"
    assert plan_many("note", [], []) == []


def test_a_plan_on_a_512_map_finishes():
    grid = random_map(512, 512, 0.1, seed=7)
    occ = grid.occ.copy()
    occ[20, 20] = occ[490, 470] = False
    res = plan_many(occ, [(20, 20)], [(490, 470)], references=False)[0]
    assert res.valid and not res.fallback
    assert res.length < 1.0 * np.hypot(470, 450) * 1.1


def test_navigate_preset_runs_the_notes_setup():
    res = navigate(preset="note")
    assert res.success and res.path[0].tolist() == [0, 0] and res.path[-1].tolist() == [19, 10]
    with pytest.raises(InputError) as e:
        navigate(preset="nope")
    assert e.value.where == "preset"
