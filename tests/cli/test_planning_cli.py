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
