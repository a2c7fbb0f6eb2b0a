"""Property-based fuzzing of the planning readers (MovingAI maps and scenarios, text maps,
.npy arrays, images, cells): never a traceback, always an InputError naming the file.

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200); see tests/fuzzing.py.
"""

import io

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from descentlab.core.errors import InputError  # noqa: E402
from descentlab.planning.grid import load_map, load_scenarios, parse_cell  # noqa: E402
from tests.fuzzing import FUZZ, _clean, files_of, mutated  # noqa: E402

VALID_MAP = b"type octile\nheight 4\nwidth 5\nmap\n.....\n.@@..\n..T..\n.....\n"
VALID_TXT = b".....\n.@@..\n.....\n"
VALID_SCEN = (b"version 1\n0\tm.map\t5\t4\t0\t0\t4\t3\t6.41421356\n"  # the A* optima
              b"0\tm.map\t5\t4\t1\t0\t3\t2\t4.00000000\n")


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _png(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


VALID_NPY = _npy(np.eye(6, dtype=bool))
VALID_PNG = _png((np.arange(64).reshape(8, 8) % 3 == 0).astype(np.uint8) * 255)

arrays = st.tuples(st.integers(0, 3), st.sampled_from(["bool", "uint8", "int64", "float32",
                                                       "complex64", "U2"]),
                   st.integers(0, 9)).map(
    lambda t: _npy(np.zeros((t[2],) * t[0], dtype=t[1])))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_maps")


@FUZZ
@given(data=files_of(VALID_MAP))
def test_movingai_map_never_crashes(workdir, data):
    f = workdir / "m.map"
    f.write_bytes(data)
    _clean(lambda: load_map(f), f)


@FUZZ
@given(data=files_of(VALID_TXT))
def test_text_map_never_crashes(workdir, data):
    f = workdir / "m.txt"
    f.write_bytes(data)
    _clean(lambda: load_map(f), f)


@FUZZ
@given(data=st.one_of(files_of(VALID_NPY), mutated(VALID_NPY), arrays))
def test_npy_map_never_crashes(workdir, data):
    f = workdir / "m.npy"
    f.write_bytes(data)
    _clean(lambda: load_map(f), f)


@FUZZ
@given(data=st.one_of(files_of(VALID_PNG), mutated(VALID_PNG)))
def test_image_map_never_crashes(workdir, data):
    f = workdir / "m.png"
    f.write_bytes(data)
    _clean(lambda: load_map(f), f)


@FUZZ
@given(data=files_of(VALID_SCEN), with_map=st.booleans())
def test_scenarios_never_crash(workdir, data, with_map):
    f = workdir / "m.map.scen"
    f.write_bytes(data)
    grid = load_map(_write(workdir / "m.map", VALID_MAP)) if with_map else None
    _clean(lambda: load_scenarios(f, grid), f)


@FUZZ
@given(text=st.text(max_size=12))
def test_cells_parse_or_say_which_argument(text):
    try:
        r, c = parse_cell(text, "start")
        assert isinstance(r, int) and isinstance(c, int)
    except InputError as e:
        assert e.where == "start" and "\n" not in e.line()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_the_valid_files_load():
    # The seeds of the mutations are themselves valid (else the fuzz tests only see errors).
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        m = load_map(_write(d / "m.map", VALID_MAP))
        assert m.occ.shape == (4, 5) and m.occ.sum() == 3
        assert load_map(_write(d / "m.txt", VALID_TXT)).occ.sum() == 2
        assert load_map(_write(d / "m.npy", VALID_NPY)).occ.sum() == 6
        assert load_map(_write(d / "m.png", VALID_PNG)).occ.shape == (8, 8)
        assert len(load_scenarios(_write(d / "m.map.scen", VALID_SCEN), m)) == 2
