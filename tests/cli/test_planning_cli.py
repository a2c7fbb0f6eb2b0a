"""The plan and plan-bench commands: results, JSON, and one-line errors with exit code 2."""

import json

import numpy as np
import pytest

from descentlab.cli.main import main
from descentlab.planning.grid import random_map
from descentlab.planning.search import astar
from tests.figures import assert_figure

QUICK = ["--coarse-iters", "80", "--fine-iters", "80", "--n-starts", "4"]


def _write_movingai(tmp_path, occ, scen_pairs):
    h, w = occ.shape
    rows = ["".join("@" if v else "." for v in row) for row in occ]
    mp = tmp_path / "tiny.map"
    mp.write_text(f"type octile\nheight {h}\nwidth {w}\nmap\n" + "\n".join(rows) + "\n")
    lines = ["version 1"]
    for k, (s, g) in enumerate(scen_pairs):
        opt = astar(occ, s, g).length
        lines.append(f"{k}\ttiny.map\t{w}\t{h}\t{s[1]}\t{s[0]}\t{g[1]}\t{g[0]}\t{opt:.8f}")
    (tmp_path / "tiny.map.scen").write_text("\n".join(lines) + "\n")
    return mp


def test_plan_on_note_map_writes_json_and_figures(tmp_path, capsys):
    out = tmp_path / "plan"
    rc = main(["plan", "--map", "note", "--out", str(out), "--json", str(tmp_path / "r.json"),
               *QUICK])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["valid"] is True and res["start"] == [0, 0] and res["goal"] == [19, 10]
    assert res["cells"][0] == [0, 0] and res["cells"][-1] == [19, 10]
    assert res["astar_length"] == pytest.approx(astar(np.asarray(_note()), (0, 0), (19, 10)).length)
    assert_figure(out / "plan.png")
    assert_figure(out / "loss.png")


def _note():
    from descentlab.planning.grid import note_map

    return note_map().occ


def test_plan_bench_fields(tmp_path):
    occ = random_map(24, 24, 0.1, seed=5).occ.copy()
    pairs = [((1, 1), (22, 20)), ((2, 20), (20, 3)), ((12, 0), (12, 23))]
    for s, g in pairs:
        occ[s] = occ[g] = False
    mp = _write_movingai(tmp_path, occ, pairs)
    rc = main(["plan-bench", str(mp), "--planner", "astar", "--json", str(tmp_path / "a.json")])
    assert rc == 0
    res = json.loads((tmp_path / "a.json").read_text())
    assert res["n"] == 3 and res["success_rate"] == 1.0
    assert res["length_ratio_median"] == pytest.approx(1.0)  # A* equals the .scen optimum
    for key in ("planner", "time_per_plan_s_median", "astar_time_per_plan_s_median", "per_bucket"):
        assert key in res
    rc = main(["plan-bench", str(mp), "--planner", "gradient", *QUICK,
               "--json", str(tmp_path / "g.json")])
    assert rc == 0
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["planner"] == "gradient" and len(g["per_bucket"]) == 3
    assert g["success_rate"] >= 2 / 3


@pytest.mark.parametrize("args, needle", [
    (["--map", "note", "--start", "1,5"], "--start"),  # a wall cell
    (["--map", "note", "--goal", "30,3"], "--goal"),  # off the map
    (["--map", "note", "--start", "a,b"], "--start"),
    (["--map", "missing.map", "--start", "0,0", "--goal", "1,1"], "missing.map"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys, tmp_path):
    rc = main(["plan", *args, "--out", str(tmp_path / "o"), "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "x.json").exists()


def test_malformed_map_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.map"
    bad.write_text("type octile\nheight 2\nwidth 3\nmap\n...\n.x.\n")
    rc = main(["plan", "--map", str(bad), "--start", "0,0", "--goal", "1,2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{bad}:6" in err and "'x'" in err


def test_unreachable_goal_is_an_input_error(tmp_path, capsys):
    occ = np.zeros((5, 5), bool)
    occ[:, 2] = True
    np.save(tmp_path / "wall.npy", occ)
    rc = main(["plan", "--map", str(tmp_path / "wall.npy"), "--start", "0,0", "--goal", "4,4"])
    assert rc == 2 and "cannot be reached" in capsys.readouterr().err


def _open_map(tmp_path, rows: list[str]):
    """An open 6x8 tiny.map and a .scen of ``rows`` (tab-separated, after 'version 1')."""
    mp = tmp_path / "tiny.map"
    mp.write_text("type octile\nheight 6\nwidth 8\nmap\n" + "........\n" * 6)
    (tmp_path / "tiny.map.scen").write_text("version 1\n" + "".join(r + "\n" for r in rows))
    return mp


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("row, words", [
    ("0\ttiny.map\t8\t6\t0\t0\t7\t5\t0",
     "optimal_length must be > 0 between distinct start and goal"),
    ("0\ttiny.map\t8\t6\t0\t0\t7\t5\t1",
     "optimal_length 1.0 is below the straight-line distance 8.60232527"),
    ("0\tother.map\t8\t6\t0\t0\t7\t5\t9.07106781",
     "scenario is for map 'other.map', not map 'tiny'"),
])
def test_plan_bench_refuses_impossible_scenarios(tmp_path, capsys, row, words):
    ok = "0\ttiny.map\t8\t6\t0\t0\t7\t0\t7.00000000"
    mp = _open_map(tmp_path, [ok, row])
    rc = main(["plan-bench", str(mp), "--planner", "astar", "--no-anyangle",
               "--json", str(tmp_path / "r.json")])
    line = _one_error(capsys)
    assert rc == 2 and f"tiny.map.scen:3: {words}" in line
    assert not (tmp_path / "r.json").exists()


def test_plan_bench_refuses_a_negative_batch(tmp_path, capsys):
    mp = _open_map(tmp_path, ["0\ttiny.map\t8\t6\t0\t0\t7\t5\t9.07106781"])
    rc = main(["plan-bench", str(mp), "--planner", "astar", "--batch", "-1", "--no-anyangle",
               "--json", str(tmp_path / "r.json")])
    assert rc == 2 and "--batch: must be >= 0" in _one_error(capsys)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv, words", [
    (["--planner", "astar", "--lr", "-5"], "--planner: planner 'astar' takes no planner "
                                           "options, got --lr"),
    (["--planner", "anyangle", "--n-starts", "2", "--init", "line"], "got --init, --n-starts"),
    (["--planner", "astar", "--preset", "line"], "--preset: planner 'astar' takes no preset"),
])
def test_planners_without_options_refuse_planner_flags(tmp_path, capsys, argv, words):
    mp = _open_map(tmp_path, ["0\ttiny.map\t8\t6\t0\t0\t7\t5\t9.07106781"])
    assert main(["plan-bench", str(mp), "--no-anyangle", *argv]) == 2
    assert words in _one_error(capsys)
    rc = main(["plan", "--map", "note", "--out", "", *argv])
    assert rc == 2 and words in _one_error(capsys)


def test_a_preset_value_clashing_with_a_flag_says_how_to_fix_it(capsys):
    # The nav preset's risk 10 needs the screened potential: with --potential harmonic the
    # error names the preset's value and the fix, which then works.
    assert main(["plan", "--map", "note", "--out", "", "--preset", "nav",
                 "--potential", "harmonic"]) == 2
    assert ("--risk: needs the screened potential (harmonic has no state cost); risk 10.0 "
            "comes from the planner preset 'nav': pass --risk 0.0 (its default)"
            in _one_error(capsys))
    assert main(["plan", "--map", "note", "--out", "", "--preset", "nav",
                 "--potential", "harmonic", "--risk", "3"]) == 2  # the user's own value
    assert "comes from" not in _one_error(capsys)
    assert main(["plan", "--map", "note", "--out", "", "--preset", "nav", "--potential",
                 "harmonic", "--risk", "0"]) == 0


def _option_help(command: str, flag: str) -> str:
    from descentlab.cli.main import build_parser

    parser = build_parser([command])
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices
               and command in a.choices).choices[command]
    return next(a.help for a in sub._actions if flag in a.option_strings)


def test_planner_and_preset_help_come_from_the_registries(monkeypatch):
    from descentlab.planning.bench import PLANNERS
    from descentlab.planning.planner import PRESETS, PlannerConfig

    def toy(occ, starts, goals, config, device, seed):
        """A toy planner of this test.

        Not the help."""

    monkeypatch.setitem(PLANNERS, "toy", toy)
    monkeypatch.setitem(PRESETS, "toypreset", PlannerConfig())
    for command in ("plan", "plan-bench"):
        planners = _option_help(command, "--planner")
        assert "toy: A toy planner of this test (default" in planners
        assert all(f"{name}: " in planners for name in PLANNERS)
        assert "Not the help" not in planners
        presets = _option_help(command, "--preset")
        assert all(name in presets for name in PRESETS)  # nav and toypreset too
