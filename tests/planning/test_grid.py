"""Grid maps: parsing of every format, its errors (file and line named), built-in maps."""

from __future__ import annotations

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.planning.grid import (
    NOTE_GOAL,
    NOTE_START,
    GridMap,
    Scenario,
    load_map,
    load_scenarios,
    note_map,
    parse_cell,
    random_map,
    sample_scenarios,
)

SMALL_MAP = "type octile\nheight 3\nwidth 4\nmap\n.@..\n.T.G\nSW.O\n"
SMALL_OCC = np.array([[0, 1, 0, 0],
                      [0, 1, 0, 0],
                      [0, 1, 0, 1]], dtype=bool)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(fn, *args) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args)
    return info.value


def test_movingai_map_parses_each_character(tmp_path):
    g = load_map(_write(tmp_path, "small.map", SMALL_MAP))
    assert g.name == "small"
    assert g.shape == (3, 4) and g.height == 3 and g.width == 4
    np.testing.assert_array_equal(g.occ, SMALL_OCC)
    assert g.is_free((0, 0)) and not g.is_free((0, 1))
    assert not g.is_free((-1, 0)) and not g.is_free((0, 4)) and not g.is_free((3, 0))


def test_map_tolerates_crlf_and_trailing_blank_lines(tmp_path):
    p = tmp_path / "crlf.map"
    p.write_bytes(SMALL_MAP.replace("\n", "\r\n").encode() + b"\r\n\r\n")
    np.testing.assert_array_equal(load_map(p).occ, SMALL_OCC)


@pytest.mark.parametrize("text, line, words", [
    ("type octile\nheight 3\nwidht 4\nmap\n", 3, "bad header line"),
    ("type hex\nheight 3\nwidth 4\nmap\n.@..\n.T.G\nSW.O\n", 1, "not supported"),
    ("type octile\nheight x\nwidth 4\nmap\n.@..\n.T.G\nSW.O\n", 2, "positive integer"),
    ("type octile\nheight 3\nwidth 4\n", 3, "no 'map' line"),
    ("type octile\nheight 3\nmap\n.@..\n", 3, "no 'width' line"),
    ("type octile\nheight 3\nwidth 4\nmap\n.@..\n.T.\nSW.O\n", 6, "3 characters, expected 4"),
    ("type octile\nheight 3\nwidth 4\nmap\n.@..\n.T.G\nSWxO\n", 7, "unknown character 'x' at column 2"),
    ("type octile\nheight 3\nwidth 4\nmap\n.@..\n.T.G\n", 6, "only 2 rows"),
    ("type octile\nheight 3\nwidth 4\nmap\n.@..\n.T.G\nSW.O\n....\n", 8, "more than the height"),
])
def test_malformed_map_names_file_and_line(tmp_path, text, line, words):
    p = _write(tmp_path, "bad.map", text)
    err = _error(load_map, p)
    assert err.where == f"{p}:{line}"
    assert words in err.message
    assert err.line().startswith(f"{p}:{line}: ")


def test_missing_file_and_unknown_suffix(tmp_path):
    err = _error(load_map, tmp_path / "nope.map")
    assert err.where == str(tmp_path / "nope.map") and "not found" in err.message
    err = _error(load_map, _write(tmp_path, "m.xyz", "..."))
    assert "unknown map kind '.xyz'" in err.message and ".map" in err.message


def test_text_map_and_its_errors(tmp_path):
    g = load_map(_write(tmp_path, "t.txt", ".@..\n.T.G\nSW.O\n\n"))
    np.testing.assert_array_equal(g.occ, SMALL_OCC)
    p = _write(tmp_path, "ragged.txt", "....\n...\n")
    assert _error(load_map, p).where == f"{p}:2"
    p = _write(tmp_path, "char.txt", "....\n..#.\n")
    err = _error(load_map, p)
    assert err.where == f"{p}:2" and "'#' at column 2" in err.message


SCEN = ("version 1\n"
        "0\tsmall.map\t4\t3\t0\t0\t2\t0\t2.00000000\n"
        "1\tsmall.map\t4\t3\t0\t2\t3\t1\t4.41421356\n")


def test_scenarios_parse_x_as_column_y_as_row(tmp_path):
    g = load_map(_write(tmp_path, "small.map", SMALL_MAP))
    sc = load_scenarios(_write(tmp_path, "small.map.scen", SCEN), g)
    assert sc == [
        Scenario(0, "small.map", 4, 3, start=(0, 0), goal=(0, 2), optimal_length=2.0),
        Scenario(1, "small.map", 4, 3, start=(2, 0), goal=(1, 3), optimal_length=4.41421356),
    ]


@pytest.mark.parametrize("text, line, words", [
    ("version1\n", 1, "version 1"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t2\t0\n", 2, "expected 9"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t2\t0\t2.0\n0\tsmall.map\t4\t3\ta\t0\t2\t0\t2\n", 3,
     "field 'start_x' is not an integer: 'a'"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t2\t0\tlong\n", 2,
     "field 'optimal_length' is not a number"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t4\t0\t2.0\n", 2, "goal (x=4, y=0) is outside"),
    ("version 1\n0\tsmall.map\t4\t3\t1\t1\t2\t0\t2.0\n", 2, "start (x=1, y=1) is an obstacle"),
    ("version 1\n0\tsmall.map\t5\t3\t0\t0\t2\t0\t2.0\n", 2, "is for a 5x3"),
    # an optimal length that cannot be: zero between distinct ends, below the straight line
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t2\t0\t2.0\n0\tsmall.map\t4\t3\t0\t0\t3\t1\t0\n", 3,
     "optimal_length must be > 0 between distinct start and goal"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t2\t0\t1.9\n", 2,
     "optimal_length 1.9 is below the straight-line distance 2.00000000"),
    ("version 1\n0\tother.map\t4\t3\t0\t0\t2\t0\t2.0\n", 2,
     "scenario is for map 'other.map', not map 'small'"),
    ("version 1\n0\tsmall.map\t4\t3\t0\t0\t0\t0\t3.5\n", 2,
     "optimal_length must be 0 when start and goal are the same cell, got 3.5"),
])
def test_malformed_scenarios_name_file_and_line(tmp_path, text, line, words):
    g = load_map(_write(tmp_path, "small.map", SMALL_MAP))
    p = _write(tmp_path, "bad.scen", text)
    err = _error(load_scenarios, p, g)
    assert err.where == f"{p}:{line}"
    assert words in err.message


def test_scenario_rows_name_the_map_by_its_file_name_alone(tmp_path):
    # The map column is a relative file name: a folder before it (either slash) is no
    # other map; another file name is, even in the same folder.
    g = load_map(_write(tmp_path, "small.map", SMALL_MAP))
    row = "\t4\t3\t0\t2\t3\t1\t4.41421356\n"
    for name in ("maps/small.map", "maps\\dao\\small.map", "small.map"):
        sc = load_scenarios(_write(tmp_path, "ok.scen", f"version 1\n0\t{name}{row}"), g)
        assert [s.map for s in sc] == [name]
    for name in ("maps/other.map", "small2.map", "maps/small.map/other.map"):
        p = _write(tmp_path, "bad.scen", f"version 1\n0\tsmall.map{row}0\t{name}{row}")
        err = _error(load_scenarios, p, g)
        assert err.where == f"{p}:3" and f"for map {name!r}" in err.message


def test_optimal_lengths_rounded_to_8_decimals_load_and_shorter_ones_do_not(tmp_path):
    # One diagonal step is sqrt(2) = 1.41421356237... long: MovingAI writes
    # 1.41421356, a hair below it, which is fine; 1.414 is not a length any path can have.
    g = load_map(_write(tmp_path, "small.map", SMALL_MAP))
    row = "0\tsmall.map\t4\t3\t2\t0\t3\t1\t{}\n"  # (row 0, col 2) -> (1, 3)
    p = _write(tmp_path, "ok.scen", "version 1\n" + row.format("1.41421356"))
    assert load_scenarios(p, g)[0].optimal_length == 1.41421356
    p = _write(tmp_path, "bad.scen", "version 1\n" + row.format("1.414"))
    err = _error(load_scenarios, p, g)
    assert err.where == f"{p}:2" and "below the straight-line distance" in err.message
    assert "below the straight-line" in _error(load_scenarios, p, None).message  # no map


def test_png_dark_is_obstacle(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    occ = rng.random((13, 17)) < 0.3
    gray = np.where(occ, rng.integers(0, 120, occ.shape), rng.integers(140, 256, occ.shape))
    Image.fromarray(gray.astype(np.uint8), mode="L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_map(tmp_path / "m.png").occ, occ)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)  # (H, W, 3)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_map(tmp_path / "c.png").occ, occ)


def test_unreadable_image_names_file(tmp_path):
    p = _write(tmp_path, "broken.png", "this is not a png")
    err = _error(load_map, p)
    assert err.where == str(p) and "not a readable image" in err.message


def test_npy_bool_int_float(tmp_path):
    occ = np.array([[0, 1, 1], [0, 0, 1]], dtype=bool)
    for name, arr in [("b.npy", occ), ("i.npy", occ.astype(np.int64)),
                      ("f.npy", np.where(occ, 0.7, 0.2))]:
        np.save(tmp_path / name, arr)
        np.testing.assert_array_equal(load_map(tmp_path / name).occ, occ)
    np.save(tmp_path / "bad.npy", np.array([[0, 255]], dtype=np.uint8))
    err = _error(load_map, tmp_path / "bad.npy")
    assert "found 255 at row 0, column 1" in err.message
    np.save(tmp_path / "3d.npy", np.zeros((2, 2, 2)))
    assert "shape (2, 2, 2)" in _error(load_map, tmp_path / "3d.npy").message


def test_note_map_walls():
    g = load_map("note")
    assert g.shape == (20, 20) and NOTE_START == (0, 0) and NOTE_GOAL == (19, 10)
    walls = {(r, 5) for r in range(1, 6)} | {(10, c) for c in range(5, 11)} \
        | {(r, 15) for r in range(10, 16)}
    assert {tuple(c) for c in np.argwhere(g.occ).tolist()} == walls
    assert g.is_free(NOTE_START) and g.is_free(NOTE_GOAL)
    np.testing.assert_array_equal(note_map().occ, g.occ)


def test_check_cell_and_parse_cell():
    g = note_map()
    assert g.check_cell((19, 10), "--goal") == (19, 10)
    err = _error(g.check_cell, (20, 3), "--start")
    assert err.where == "--start" and "outside the 20x20 map" in err.message
    err = _error(g.check_cell, (10, 7), "--goal")
    assert err.where == "--goal" and "obstacle" in err.message
    assert parse_cell(" 3, 4", "--start") == (3, 4)
    assert _error(parse_cell, "3;4", "--start").where == "--start"


def test_grid_map_is_read_only_copy():
    arr = np.zeros((2, 2), dtype=bool)
    g = GridMap(arr, "x")
    arr[0, 0] = True
    assert not g.occ[0, 0]
    with pytest.raises(ValueError):
        g.occ[0, 0] = True


def test_random_map_seeded_and_density():
    a, b = random_map(200, 300, 0.25, seed=7), random_map(200, 300, 0.25, seed=7)
    np.testing.assert_array_equal(a.occ, b.occ)
    assert not np.array_equal(a.occ, random_map(200, 300, 0.25, seed=8).occ)
    assert a.shape == (200, 300)
    # 60 000 Bernoulli(0.25) cells: standard deviation of the mean is 0.0018
    assert abs(a.occ.mean() - 0.25) < 0.01
    assert not random_map(5, 5, 0.0, seed=0).occ.any()
    assert random_map(5, 5, 1.0, seed=0).occ.all()


def _scenarios(n_buckets, per_bucket):
    out = []
    for b in range(n_buckets):
        for k in range(per_bucket):
            start = (b, k)
            goal = start if k == 0 else (b, k + 1)  # the first of each bucket is zero-length
            out.append(Scenario(b, "m.map", 100, 100, start, goal, float(k > 0)))
    return out


def test_sample_scenarios_spread_over_buckets():
    sc = _scenarios(50, 10)
    pick = sample_scenarios(sc, 20)
    assert len(pick) == 20
    assert all(s.start != s.goal for s in pick)
    buckets = [s.bucket for s in pick]
    # round(linspace(0, 49, 20)): evenly spaced, first and last bucket included
    assert buckets == [int(b) for b in np.round(np.linspace(0, 49, 20))]
    assert buckets[0] == 0 and buckets[-1] == 49
    # inside each bucket the middle of the 9 non-zero-length scenarios: position 4 -> k = 5
    assert all(s.start[1] == 5 for s in pick)
    assert sample_scenarios(sc, 20) == pick  # deterministic


def test_sample_scenarios_more_than_buckets_and_all():
    sc = _scenarios(3, 10)
    pick = sample_scenarios(sc, 7)
    assert len(pick) == 7 and len({id(s) for s in pick}) == 7
    assert {s.bucket for s in pick} == {0, 1, 2}
    assert sample_scenarios(sc, 1000) == [s for s in sc if s.start != s.goal]
    assert sample_scenarios(sc, 0) == []


def test_generated_mazes_are_perfect_and_rooms_connected():
    from scipy.ndimage import label

    from descentlab.planning.grid import maze_map, rooms_map

    m = maze_map(7, seed=3)
    assert m.shape == (15, 15) and not m.occ[1, 1]
    free = ~m.occ
    assert free.sum() == 7 * 7 + (7 * 7 - 1)  # the cells and the walls opened between them
    assert label(free)[1] == 1  # one corridor system...
    edges = (free[1:] & free[:-1]).sum() + (free[:, 1:] & free[:, :-1]).sum()
    assert edges == free.sum() - 1  # ...and a tree: exactly one way between two cells
    assert np.array_equal(maze_map(7, seed=3).occ, m.occ)
    assert not np.array_equal(maze_map(7, seed=4).occ, m.occ)
    r = rooms_map(31, 9, seed=0)
    assert r.occ[9].sum() == 31 - 4 and r.occ[:, 19].sum() == 31 - 4  # a door per segment (4)
    assert label(~r.occ)[1] == 1
