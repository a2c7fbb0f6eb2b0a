"""Grid maps: MovingAI ``.map``/``.scen``, NumPy, images, plain text, the note's map, random maps.

A map is an (H, W) boolean array, True = obstacle, indexed ``(row, col)`` (SPEC A: the
obstacle map ``m_o(i, j)``, row i, column j). Loaders are picked by :data:`LOADERS`
(file suffix -> loader); :func:`load_map` also knows the names in :data:`NAMED_MAPS`
(``note``). Every malformed input raises :class:`InputError` naming the file and line.

MovingAI formats (Sturtevant, "Benchmarks for Grid-Based Pathfinding", 2012):
``.map`` is ``type octile`` / ``height H`` / ``width W`` / ``map`` followed by H rows of W
characters (passable ``. G S``, blocked ``@ O T W``); ``.scen`` is ``version 1`` followed by
tab-separated ``bucket map width height start_x start_y goal_x goal_y optimal_length`` rows,
x = column, y = row.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from descentlab.core.errors import InputError, require_file

PASSABLE = frozenset(".GS")
BLOCKED = frozenset("@OTW")

NOTE_START = (0, 0)
NOTE_GOAL = (19, 10)


@dataclass(frozen=True, eq=False)
class GridMap:
    """An obstacle map. ``occ`` (H, W) bool, True = obstacle (stored read-only); ``name``."""

    occ: np.ndarray
    name: str

    def __post_init__(self) -> None:
        occ = np.array(self.occ, dtype=bool)  # private copy
        if occ.ndim != 2 or occ.size == 0:
            raise ValueError(f"a grid map needs a non-empty 2-D array, got shape {occ.shape}")
        occ.flags.writeable = False
        object.__setattr__(self, "occ", occ)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.occ.shape  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return self.occ.shape[0]

    @property
    def width(self) -> int:
        return self.occ.shape[1]

    def in_bounds(self, cell: Sequence[int]) -> bool:
        """True iff ``cell = (row, col)`` lies on the map."""
        return 0 <= cell[0] < self.height and 0 <= cell[1] < self.width

    def is_free(self, cell: Sequence[int]) -> bool:
        """True iff ``cell = (row, col)`` is on the map and not an obstacle."""
        return self.in_bounds(cell) and not self.occ[cell[0], cell[1]]

    def check_cell(self, cell: Sequence[int], what: str) -> tuple[int, int]:
        """Return ``cell`` as ``(row, col)``; InputError (``where=what``) if it is not a pair
        of integers (a float with a fraction is not rounded silently), off-map or blocked."""
        try:
            r, c = (float(v) for v in cell)
            ok = r.is_integer() and c.is_integer() and not isinstance(cell, (str, bytes))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"expected a (row, col) pair of integers, got {cell!r}", where=what)
        r, c = int(r), int(c)
        if not self.in_bounds((r, c)):
            raise InputError(f"cell ({r}, {c}) is outside the {self.height}x{self.width} map "
                             f"'{self.name}' (rows 0..{self.height - 1}, columns "
                             f"0..{self.width - 1})", where=what)
        if self.occ[r, c]:
            raise InputError(f"cell ({r}, {c}) is an obstacle on map '{self.name}'", where=what)
        return r, c


@dataclass(frozen=True)
class Scenario:
    """One MovingAI scenario; ``start``/``goal`` are ``(row, col)`` = ``(y, x)``."""

    bucket: int
    map: str
    width: int
    height: int
    start: tuple[int, int]
    goal: tuple[int, int]
    optimal_length: float


def parse_cell(text: str, what: str) -> tuple[int, int]:
    """Parse ``"ROW,COL"`` into ``(row, col)``; InputError (``where=what``) if malformed."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"expected ROW,COL (two integers), got {text!r}", where=what) from None


# ------------------------------------------------------------------------- text grids

def _parse_row(line: str, width: int | None, where: str) -> np.ndarray:
    """One row of map characters -> (W,) bool, True = blocked."""
    if width is not None and len(line) != width:
        raise InputError(f"row has {len(line)} characters, expected {width}", where=where)
    for c, ch in enumerate(line):
        if ch not in PASSABLE and ch not in BLOCKED:
            raise InputError(f"unknown character {ch!r} at column {c} (0-based); passable "
                             f"'.GS', blocked '@OTW'", where=where)
    return np.frombuffer(line.encode("ascii"), dtype=np.uint8)


def _rows_to_occ(rows: list[np.ndarray]) -> np.ndarray:
    codes = np.stack(rows)  # (H, W) uint8 character codes
    blocked = np.frombuffer("".join(sorted(BLOCKED)).encode(), dtype=np.uint8)
    return np.isin(codes, blocked)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError as e:
        lineno = path.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError("non-ASCII byte in a text map", where=f"{path}:{lineno}") from None


def load_movingai_map(path: str | os.PathLike) -> GridMap:
    """Read a MovingAI ``.map`` file -> GridMap (name = file stem)."""
    p = require_file(path, "map file")
    lines = _read_lines(p)
    header: dict[str, tuple[str, int]] = {}  # key -> (value, line number)
    lineno = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line == "map":
            break
        key, _, value = line.partition(" ")
        if key not in ("type", "height", "width") or not value.strip() or key in header:
            raise InputError(f"bad header line {line!r}: expected 'type octile', 'height H', "
                             f"'width W', then 'map'", where=f"{p}:{lineno}")
        header[key] = (value.strip(), lineno)
    else:
        raise InputError("no 'map' line: expected 'type octile', 'height H', 'width W', "
                         "then 'map'", where=f"{p}:{max(lineno, 1)}")
    for key in ("type", "height", "width"):
        if key not in header:
            raise InputError(f"header has no '{key}' line", where=f"{p}:{lineno}")
    if header["type"][0] != "octile":
        raise InputError(f"map type {header['type'][0]!r} is not supported (only 'octile')",
                         where=f"{p}:{header['type'][1]}")
    dims = {}
    for key in ("height", "width"):
        text, at = header[key]
        try:
            dims[key] = int(text)
            if dims[key] <= 0:
                raise ValueError
        except ValueError:
            raise InputError(f"{key} must be a positive integer, got {text!r}",
                             where=f"{p}:{at}") from None
    h, w = dims["height"], dims["width"]
    body = lines[lineno:]  # the rows; body[k] is line lineno + 1 + k
    while body and not body[-1].strip():
        body.pop()  # trailing blank lines are harmless
    rows = [_parse_row(line.rstrip(), w, f"{p}:{lineno + 1 + k}")
            for k, line in enumerate(body[:h])]
    if len(body) < h:
        raise InputError(f"map has only {len(body)} rows, the header says height {h}",
                         where=f"{p}:{lineno + len(body)}")
    if len(body) > h:
        raise InputError(f"map has {len(body)} rows, more than the height {h} in the header",
                         where=f"{p}:{lineno + 1 + h}")
    return GridMap(_rows_to_occ(rows), p.stem)


def load_text_map(path: str | os.PathLike) -> GridMap:
    """Read a plain text grid (``.txt``): one row per line in the ``.map`` alphabet."""
    p = require_file(path, "map file")
    lines = _read_lines(p)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].rstrip():
        raise InputError("empty map or empty first row", where=f"{p}:1")
    width = len(lines[0].rstrip())
    rows = [_parse_row(line.rstrip(), width, f"{p}:{k}") for k, line in enumerate(lines, 1)]
    return GridMap(_rows_to_occ(rows), p.stem)


# ------------------------------------------------------------------------- arrays, images

def load_npy_map(path: str | os.PathLike) -> GridMap:
    """Read a ``.npy`` (H, W) array: bool, integer 0/1 (1 = obstacle) or float (>= 0.5)."""
    p = require_file(path, "map file")
    try:
        arr = np.load(p, allow_pickle=False)
    except MemoryError:
        raise InputError("the array header asks for more memory than there is", where=p) from None
    except Exception as e:  # numpy's header parser raises ValueError, TokenError, SyntaxError...
        raise InputError(f"not a readable .npy array ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})", where=p) from None
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"expected a non-empty 2-D array, got shape {arr.shape}", where=p)
    if arr.dtype == bool:
        occ = arr
    elif np.issubdtype(arr.dtype, np.integer):
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(f"integer map must hold only 0 (free) and 1 (obstacle); "
                             f"found {arr[r, c]} at row {r}, column {c}", where=p)
        occ = arr == 1
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            r, c = np.argwhere(~np.isfinite(arr))[0]
            raise InputError(f"non-finite value at row {r}, column {c}", where=p)
        occ = arr >= 0.5
    else:
        raise InputError(f"unsupported array dtype {arr.dtype} (bool, int or float)", where=p)
    return GridMap(occ, p.stem)


def load_image_map(path: str | os.PathLike) -> GridMap:
    """Read an image: grayscale in [0, 1] (transparent = white), dark (< 0.5) = obstacle."""
    from PIL import Image, UnidentifiedImageError

    p = require_file(path, "map image")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            gray = np.asarray(im.convert("L"), dtype=np.float64) / 255.0  # (H, W)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error,
            Image.DecompressionBombError) as e:  # what Pillow's decoders raise on bad bytes
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"not a readable image ({e.__class__.__name__}: {first})",
                         where=p) from None
    return GridMap(gray < 0.5, p.stem)


# ------------------------------------------------------------------------- built-in maps

def note_map() -> GridMap:
    """The note's 20x20 map (SPEC A): walls (row, column) rows 1-5 at column 5; row 10,
    columns 5-10; rows 10-15 at column 15. Start :data:`NOTE_START`, goal :data:`NOTE_GOAL`."""
    occ = np.zeros((20, 20), dtype=bool)
    occ[1:6, 5] = True
    occ[10, 5:11] = True
    occ[10:16, 15] = True
    return GridMap(occ, "note")


def random_map(height: int, width: int, density: float, seed: int) -> GridMap:
    """A seeded map whose cells are obstacles independently with probability ``density``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"map size must be positive, got {height}x{width}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    occ = np.random.default_rng(seed).random((height, width)) < density  # (H, W)
    return GridMap(occ, f"random{height}x{width}-d{density:g}-s{seed}")


def maze_map(cells: int, seed: int) -> GridMap:
    """A seeded perfect maze of 1-wide corridors, (2·cells + 1)² (randomised depth-first
    carving: exactly one way between any two free cells)."""
    if cells <= 0:
        raise ValueError(f"a maze needs at least one cell, got {cells}")
    rng = np.random.default_rng(seed)
    occ = np.ones((2 * cells + 1, 2 * cells + 1), dtype=bool)
    stack, seen = [(0, 0)], {(0, 0)}
    occ[1, 1] = False
    while stack:
        r, c = stack[-1]
        nbrs = [(r + dr, c + dc) for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
                if 0 <= r + dr < cells and 0 <= c + dc < cells and (r + dr, c + dc) not in seen]
        if not nbrs:
            stack.pop()
            continue
        nr, nc = nbrs[rng.integers(len(nbrs))]
        occ[2 * nr + 1, 2 * nc + 1] = False
        occ[r + nr + 1, c + nc + 1] = False  # the wall between the two cells
        seen.add((nr, nc))
        stack.append((nr, nc))
    return GridMap(occ, f"maze{2 * cells + 1}-s{seed}")


def rooms_map(size: int, room: int, seed: int) -> GridMap:
    """A seeded size² map of square rooms of side ``room`` between 1-thick walls, one random
    door in each wall segment."""
    if size <= 0 or room <= 0:
        raise ValueError(f"size and room must be positive, got {size} and {room}")
    rng = np.random.default_rng(seed)
    occ = np.zeros((size, size), dtype=bool)
    for k in range(room, size, room + 1):
        occ[k, :] = True
        occ[:, k] = True
    for k in range(room, size, room + 1):
        for lo in range(0, size, room + 1):
            hi = min(lo + room, size)
            if hi > lo:
                occ[k, rng.integers(lo, hi)] = False  # a door in the horizontal wall
                occ[rng.integers(lo, hi), k] = False  # and in the vertical one
    return GridMap(occ, f"rooms{size}-r{room}-s{seed}")


NAMED_MAPS: dict[str, Callable[[], GridMap]] = {"note": note_map}

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm",
                   ".pbm", ".webp")
LOADERS: dict[str, Callable[[str | os.PathLike], GridMap]] = {
    ".map": load_movingai_map,
    ".txt": load_text_map,
    ".npy": load_npy_map,
    **{s: load_image_map for s in _IMAGE_SUFFIXES},
}


def load_map(spec: str | os.PathLike) -> GridMap:
    """A map by name (:data:`NAMED_MAPS`, e.g. ``note``) or file (suffix in :data:`LOADERS`)."""
    if str(spec) in NAMED_MAPS:
        return NAMED_MAPS[str(spec)]()
    p = Path(spec)
    loader = LOADERS.get(p.suffix.lower())
    if loader is None:
        raise InputError(f"unknown map kind {p.suffix or '(no suffix)'!r}: use one of "
                         f"{', '.join(sorted(NAMED_MAPS))} or a file ending in "
                         f"{', '.join(sorted(LOADERS))}", where=p)
    return loader(p)


def as_grid(map_: GridMap | str | os.PathLike | np.ndarray, name: str = "array") -> GridMap:
    """A GridMap from a GridMap, a map name or file (:func:`load_map`), or an (H, W) array
    (bool, True = obstacle; or obstacle probabilities, ≥ 0.5 = obstacle)."""
    if isinstance(map_, GridMap):
        return map_
    if isinstance(map_, np.ndarray):
        return GridMap(map_ if map_.dtype == bool else map_ >= 0.5, name)
    return load_map(map_)


# ------------------------------------------------------------------------- scenarios

# MovingAI writes optimal lengths to 8 decimals; the octile optimum is never below the
# straight-line distance, so a length below it by more than this is an error in the file.
LENGTH_TOLERANCE = 1e-6

_SCEN_FIELDS = ("bucket", "map", "width", "height", "start_x", "start_y", "goal_x", "goal_y",
                "optimal_length")


def load_scenarios(path: str | os.PathLike, grid: GridMap | None = None) -> list[Scenario]:
    """Read a MovingAI ``.scen`` file. With ``grid``, check each row names it (the map column
    without folders or suffix is the grid's name, a loaded map's file stem), has its size,
    and starts and ends on free cells of it; without, check the ends lie inside the row's
    width/height. Every row's optimal length must be possible: finite, > 0 between distinct
    ends and at least their straight-line distance (:data:`LENGTH_TOLERANCE`)."""
    p = require_file(path, "scenario file")
    lines = _read_lines(p)
    if not lines or lines[0].split()[:1] != ["version"] or len(lines[0].split()) != 2:
        raise InputError("first line must be 'version 1'", where=f"{p}:1")
    out = []
    for lineno, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        where = f"{p}:{lineno}"
        fields = raw.rstrip("\r").split("\t")
        if len(fields) != len(_SCEN_FIELDS):
            fields = raw.split()
        if len(fields) != len(_SCEN_FIELDS):
            raise InputError(f"expected 9 tab-separated fields ({' '.join(_SCEN_FIELDS)}), "
                             f"got {len(fields)}", where=where)
        vals: dict[str, float | int] = {}
        for name, text in zip(_SCEN_FIELDS, fields):
            if name == "map":
                continue
            try:
                vals[name] = float(text) if name == "optimal_length" else int(text)
            except ValueError:
                kind = "a number" if name == "optimal_length" else "an integer"
                raise InputError(f"field '{name}' is not {kind}: {text!r}", where=where) from None
        sc = Scenario(bucket=int(vals["bucket"]), map=fields[1], width=int(vals["width"]),
                      height=int(vals["height"]),
                      start=(int(vals["start_y"]), int(vals["start_x"])),
                      goal=(int(vals["goal_y"]), int(vals["goal_x"])),
                      optimal_length=float(vals["optimal_length"]))
        _check_scenario(sc, grid, where)
        out.append(sc)
    return out


def scenario_map_name(column: str) -> str:
    """The map a ``.scen`` row names: its map column (a relative file name, which may carry
    folders, ``/`` or ``\\``) without folders and ``.map`` suffix, comparable with a loaded
    map's name."""
    base = column.replace("\\", "/").rsplit("/", 1)[-1]
    return Path(base).stem if base.endswith(".map") else base


def _check_scenario(sc: Scenario, grid: GridMap | None, where: str) -> None:
    if grid is not None and scenario_map_name(sc.map) != grid.name:
        raise InputError(f"scenario is for map {sc.map!r}, not map '{grid.name}'", where=where)
    if grid is not None and (sc.height, sc.width) != grid.shape:
        raise InputError(f"scenario is for a {sc.width}x{sc.height} (WxH) map, map "
                         f"'{grid.name}' is {grid.width}x{grid.height}", where=where)
    for what, (r, c) in (("start", sc.start), ("goal", sc.goal)):
        if not (0 <= r < sc.height and 0 <= c < sc.width):
            raise InputError(f"{what} (x={c}, y={r}) is outside the {sc.width}x{sc.height} "
                             f"map", where=where)
        if grid is not None and grid.occ[r, c]:
            raise InputError(f"{what} (x={c}, y={r}) is an obstacle on map '{grid.name}'",
                             where=where)
    length = sc.optimal_length
    if not np.isfinite(length) or length < 0:
        raise InputError(f"optimal_length must be finite and >= 0, got {length}", where=where)
    straight = float(np.hypot(sc.goal[0] - sc.start[0], sc.goal[1] - sc.start[1]))
    if sc.start != sc.goal and length <= 0:
        raise InputError(f"optimal_length must be > 0 between distinct start and goal, got "
                         f"{length}", where=where)
    if sc.start == sc.goal and length > LENGTH_TOLERANCE:
        raise InputError(f"optimal_length must be 0 when start and goal are the same cell, "
                         f"got {length}", where=where)
    if length < straight - LENGTH_TOLERANCE:
        raise InputError(f"optimal_length {length} is below the straight-line distance "
                         f"{straight:.8f} between start and goal: impossible", where=where)


def sample_scenarios(scenarios: Sequence[Scenario], n: int) -> list[Scenario]:
    """Deterministically pick ``n`` scenarios spread evenly over the buckets.

    Zero-length scenarios (start == goal) are skipped. The distinct buckets are sorted and
    ``n`` evenly spaced bucket indices chosen (``round(linspace(0, B-1, n))``); a bucket
    chosen m times gives the scenarios at positions ``floor((k + 1/2) len / m)``, k < m.
    If caps leave fewer than n, the rest is filled evenly from the unused ones. The result
    is ordered by bucket, then by position in the file; all scenarios if n >= their number.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    valid = [s for s in scenarios if s.start != s.goal]
    if n >= len(valid):
        return sorted(valid, key=lambda s: s.bucket)  # stable: file order within a bucket
    by_bucket: dict[int, list[Scenario]] = {}
    for s in valid:
        by_bucket.setdefault(s.bucket, []).append(s)
    buckets = sorted(by_bucket)
    picks = np.round(np.linspace(0, len(buckets) - 1, n)).astype(int) if n else []
    counts = np.bincount(np.asarray(picks, dtype=int), minlength=len(buckets))
    chosen: list[Scenario] = []
    for b, m in zip(buckets, counts):
        members = by_bucket[b]
        m = min(int(m), len(members))
        chosen += [members[int((k + 0.5) * len(members) / m)] for k in range(m)]
    if len(chosen) < n:
        ids = {id(s) for s in chosen}
        rest = [s for s in valid if id(s) not in ids]
        idx = np.round(np.linspace(0, len(rest) - 1, n - len(chosen))).astype(int)
        chosen += [rest[i] for i in idx]
    order = {id(s): k for k, s in enumerate(valid)}
    return sorted(chosen, key=lambda s: (s.bucket, order[id(s)]))
