"""What the bot sees (SPEC B): the note's soft observation and a ray-cast range sensor.

Every sensor returns an :class:`Observation` over a window of the map: per cell a visibility
weight ``w`` in [0, 1], an observed value ``z`` ≈ ``w · m_o`` and a ``seen`` mask of the
cells the reading says something about. The per-cell occupancy reading is ``z / w``.

* ``soft`` — the note ("Gradient-based planning, mapping and execution", Cho 2024):
  ``m̃_o = clip(m_c · m_o + ε, 0, 1)``, ``ε ~ N(0, σ²)`` (σ = 0.001 in the note), ``m_c`` the
  soft position map of the bot (SPEC A convention, ``exp(-d²/β)`` normalised over the map).
  ``w = m_c``, so visibility is the Gaussian footprint of ``m_c``. A cell counts as seen
  when ``m_c ≥ seen_weight`` (there the reading's noise σ/w is small).
* ``ray`` — cells within Euclidean radius ``R`` of the bot, visible unless the straight line
  from the bot's centre to the cell's centre passes through an obstacle cell (ray casting,
  Amanatides & Woo 1987). A line passing exactly through a lattice corner is blocked only
  when both cells touching it there are obstacles (a zero-width gap). Each reading is
  flipped with probability ``flip_prob`` (optional noise). ``w = 1`` on visible cells.
  The walk per offset depends only on ``R`` and is tabulated once (:func:`ray_table`).

Cells outside the map are walls for occlusion and are never observed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from descentlab.core.config import check_config, option
from descentlab.core.errors import InputError


class Observation(NamedTuple):
    """One reading over the window ``[r0, r0+h) x [c0, c0+w)`` of the map.

    weight (h, w) float in [0, 1]: visibility; value (h, w) float in [0, 1]: observed
    ``weight · occupancy`` (+ noise); seen (h, w) bool: cells this reading informs.
    """

    origin: tuple[int, int]
    weight: np.ndarray
    value: np.ndarray
    seen: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        """The map slice this observation covers."""
        r0, c0 = self.origin
        h, w = self.weight.shape
        return slice(r0, r0 + h), slice(c0, c0 + w)

    def reading(self) -> np.ndarray:
        """Per-cell occupancy reading ``z / w`` (0 where ``w = 0``). (h, w) float."""
        return np.divide(self.value, self.weight, out=np.zeros_like(self.value),
                         where=self.weight > 0)


# ---------------------------------------------------------------- the note's soft sensor

@dataclasses.dataclass
class SoftSensorConfig:
    """The note's soft observation ``clip(m_c · m_o + ε, 0, 1)``."""

    beta: float = option(4.0, "squared width β of the bot's soft position map m_c (visibility "
                              "footprint; about √(β·ln(w_max/seen_weight)) cells)", gt=0)
    noise_std: float = option(0.001, "std of the Gaussian observation noise ε (the note: 0.001)",
                              min=0)
    seen_weight: float = option(0.005, "a cell counts as seen when m_c there is at least this")

    def __post_init__(self):
        check_config(self)


def soft_position_map(pos: tuple[float, float], shape: tuple[int, int], beta: float) -> np.ndarray:
    """``m_c`` of one position over the whole map (SPEC A), summing to 1. -> (H, W) float64."""
    import torch

    from descentlab.planning.soft_map import soft_position_map_dense

    p = torch.tensor([[float(pos[0]), float(pos[1])]], dtype=torch.float64)  # (1, 2)
    return soft_position_map_dense(p, shape[0], shape[1], beta, pad=0)[0].numpy()  # (H, W)


class SoftSensor:
    """The note's sensor; the window is the whole map."""

    def __init__(self, config: SoftSensorConfig):
        self.config = config

    def observe(self, occ: np.ndarray, pos: tuple[int, int],
                rng: np.random.Generator) -> Observation:
        """occ (H, W) bool true map, pos (row, col) -> Observation over the whole map."""
        cfg = self.config
        m_c = soft_position_map(pos, occ.shape, cfg.beta)  # (H, W)
        noise = rng.normal(0.0, cfg.noise_std, size=occ.shape) if cfg.noise_std > 0 else 0.0
        value = np.clip(m_c * occ + noise, 0.0, 1.0)
        return Observation((0, 0), m_c, value, m_c >= cfg.seen_weight)


# ---------------------------------------------------------------- ray-cast range sensor

@dataclasses.dataclass
class RaySensorConfig:
    """Range sensor with occlusion: radius R, optional flip noise."""

    radius: float = option(5.0, "sensing radius R in cells (Euclidean, centre to centre)", gt=0)
    flip_prob: float = option(0.0, "probability that a visible cell's reading is flipped",
                              min=0, lt=0.5)

    def __post_init__(self):
        check_config(self)


def ray_cells(a: int, b: int, face: str | None = None
              ) -> tuple[list[tuple[int, int]], list[tuple[tuple[int, int], ...]]]:
    """The cells the segment from the centre of cell (0, 0) to cell (a, b) passes through.

    The segment ends at the centre of (a, b), or with ``face="row"`` / ``"col"`` at the middle
    of the face of (a, b) that looks back along rows / columns towards (0, 0) (the face
    between rows a − sign(a) and a, or columns b − sign(b) and b).

    Returns ``(through, corners)``: ``through`` the cells strictly between the two ends whose
    interior the segment crosses, in order; ``corners`` the pairs of cells touched only at a
    lattice corner the segment passes exactly through. Exact: in half-cell units the end is
    (A, B) and boundary crossings are compared as integers (row boundary k at
    t = (2k+1)/|A|, column boundary m at (2m+1)/|B|; a boundary at t = 1 is not crossed).
    """
    A = 2 * a - (int(np.sign(a)) if face == "row" else 0)
    B = 2 * b - (int(np.sign(b)) if face == "col" else 0)
    si, sj = (1 if A > 0 else -1), (1 if B > 0 else -1)
    na, nb = abs(A), abs(B)
    rows, cols = na // 2, nb // 2  # boundaries crossed before the end
    i = j = 0
    k = m = 0  # crossings done along rows / columns
    through: list[tuple[int, int]] = []
    corners: list[tuple[tuple[int, int], ...]] = []
    while k < rows or m < cols:
        tk = (2 * k + 1) * nb if k < rows else None  # row crossing time, scaled by |A||B|
        tm = (2 * m + 1) * na if m < cols else None
        if tk is not None and tm is not None and tk == tm:  # exactly through a corner
            corners.append(((i + si, j), (i, j + sj)))
            i, j, k, m = i + si, j + sj, k + 1, m + 1
        elif tm is None or (tk is not None and tk < tm):
            i, k = i + si, k + 1
        else:
            j, m = j + sj, m + 1
        if (i, j) != (a, b):
            through.append((i, j))
    return through, corners


RAY_TARGETS = (None, "row", "col")  # the centre, then the two faces turned to the bot


@functools.lru_cache(maxsize=16)
def ray_table(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets within ``radius`` and their ray walks, as flat indices into the window.

    The window is (2r+1)² with r = ⌊radius⌋, flattened, plus one always-free sentinel at
    index (2r+1)². Returns ``offsets`` (N, 2) and, per ray target of :data:`RAY_TARGETS`
    (T = 3: the cell's centre, its row face, its column face; an offset in the bot's own row
    or column repeats its centre ray), ``through`` (T, N, Lmax), ``corner_a`` and ``corner_b``
    (T, N, Cmax), padded with the sentinel.
    """
    r = int(np.floor(radius))
    side = 2 * r + 1
    sentinel = side * side
    offsets = [(a, b) for a in range(-r, r + 1) for b in range(-r, r + 1)
               if (a, b) != (0, 0) and a * a + b * b <= radius * radius]
    walks, corners = [], []
    for face in RAY_TARGETS:
        for a, b in offsets:
            aligned = (face == "row" and a == 0) or (face == "col" and b == 0)
            through, pairs = ray_cells(a, b, None if aligned else face)
            walks.append([(i + r) * side + (j + r) for i, j in through])
            corners.append([((p[0] + r) * side + p[1] + r, (q[0] + r) * side + q[1] + r)
                            for p, q in pairs])
    n, t = len(offsets), len(RAY_TARGETS)
    lmax = max([len(w) for w in walks] + [1])
    cmax = max([len(c) for c in corners] + [1])
    through = np.full((t * n, lmax), sentinel, dtype=np.int64)
    ca = np.full((t * n, cmax), sentinel, dtype=np.int64)
    cb = np.full((t * n, cmax), sentinel, dtype=np.int64)
    for q in range(t * n):
        through[q, :len(walks[q])] = walks[q]
        for c, (x, y) in enumerate(corners[q]):
            ca[q, c], cb[q, c] = x, y
    shape = (t, n, -1)
    return (np.asarray(offsets, dtype=np.int64).reshape(-1, 2), through.reshape(shape),
            ca.reshape(shape), cb.reshape(shape))


def visible_cells(occ: np.ndarray, pos: tuple[int, int], radius: float) -> np.ndarray:
    """Cells visible from ``pos`` within ``radius``. occ (H, W) bool -> (H, W) bool.

    The bot's own cell is visible. A free cell is visible when the line to its centre is
    clear (so visibility between free cells is symmetric); an obstacle cell when the line to
    its centre or to the middle of a face it turns to the bot is clear — its surface is
    seen. Without the faces, a straight wall seen from the next row would show only the
    three cells nearest the bot: the lines to the others' centres cross the wall itself.
    """
    r = int(np.floor(radius))
    side = 2 * r + 1
    h, w = occ.shape
    pr, pc = int(pos[0]), int(pos[1])
    padded = np.pad(np.asarray(occ, dtype=bool), r, constant_values=True)  # off-map = wall
    win = padded[pr:pr + side, pc:pc + side].ravel()  # (side²,) centred on pos
    win = np.append(win, False)  # sentinel
    offsets, through, ca, cb = ray_table(float(radius))
    clear = ~win[through].any(axis=2) & ~(win[ca] & win[cb]).any(axis=2)  # (T, N)
    target_occ = win[(offsets[:, 0] + r) * side + offsets[:, 1] + r]  # (N,)
    seen = clear[0] | (target_occ & clear[1:].any(axis=0))  # (N,)
    vis = np.zeros((h, w), dtype=bool)
    rr, cc = offsets[seen, 0] + pr, offsets[seen, 1] + pc
    on = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    vis[rr[on], cc[on]] = True
    vis[pr, pc] = True
    return vis


class RaySensor:
    """Ray-cast range sensor; the window is the (2R+1)² square around the bot, clipped."""

    def __init__(self, config: RaySensorConfig):
        self.config = config

    def observe(self, occ: np.ndarray, pos: tuple[int, int],
                rng: np.random.Generator) -> Observation:
        """occ (H, W) bool true map, pos (row, col) -> Observation over the window."""
        r = int(np.floor(self.config.radius))
        h, w = occ.shape
        r0, r1 = max(0, pos[0] - r), min(h, pos[0] + r + 1)
        c0, c1 = max(0, pos[1] - r), min(w, pos[1] + r + 1)
        vis = visible_cells(occ, pos, self.config.radius)[r0:r1, c0:c1]  # (h', w')
        reading = occ[r0:r1, c0:c1].astype(np.float64)
        if self.config.flip_prob > 0:
            flip = rng.random(reading.shape) < self.config.flip_prob
            reading = np.where(flip, 1.0 - reading, reading)
        weight = vis.astype(np.float64)
        return Observation((r0, c0), weight, reading * weight, vis)


# ---------------------------------------------------------------- registry

SENSORS: dict[str, tuple[type, type]] = {
    "soft": (SoftSensorConfig, SoftSensor),
    "ray": (RaySensorConfig, RaySensor),
}
DEFAULT_SENSOR = "ray"


def make_sensor(name: str, config=None):
    """Build sensor ``name`` from its config (default config when None)."""
    if name not in SENSORS:
        raise InputError(f"unknown sensor {name!r}; choose from {', '.join(SENSORS)}",
                         where="sensor")
    cfg_cls, cls = SENSORS[name]
    return cls(config if config is not None else cfg_cls())
