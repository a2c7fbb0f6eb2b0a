"""Figures for planning: the map with the optimisation's waypoints and paths, loss curves.

Coordinates follow the soft position map (SPEC A): cell ``(i, j)`` is centred on the integer
point (row i, column j); rows run down the vertical axis, columns along the horizontal one.
Line widths and marker sizes scale with the map so a 20x20 and a 512x512 map both read well.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from descentlab.core.plotting import get_cmap, save_figure, subplots

MAX_HISTORY_LINES = 30  # snapshots drawn from the optimisation history (evenly subsampled)


def _xy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) ``(row, col)`` -> (x = col, y = row) for plotting."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts[:, 1], pts[:, 0]


def plot_plan(occ: np.ndarray, start: Sequence[float], goal: Sequence[float],
              path: str | os.PathLike, *, waypoints: np.ndarray | None = None,
              history: Sequence[np.ndarray] | None = None, cells: np.ndarray | None = None,
              reference_cells: np.ndarray | None = None, title: str = "") -> Path:
    """Draw one plan and save it as a PNG at ``path`` (atomically). Returns the path.

    occ: (H, W) bool, True = obstacle (dark). start, goal: ``(row, col)``.
    waypoints: (T, 2) final continuous waypoints (default: the last of ``history``).
    history: list of (T, 2) waypoint snapshots through the optimisation, drawn as faint
    lines from light (early) to dark (late); at most :data:`MAX_HISTORY_LINES` are drawn.
    cells: (L, 2) the final 8-connected cell path; cells on obstacles or off the map get a
    red cross. reference_cells: (L', 2) e.g. the A* path, a wide pale green band.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    occ = np.asarray(occ, dtype=bool)
    h, w = occ.shape
    size = max(h, w)
    fig_w = 7.5
    cell_pt = fig_w * 72.0 / size  # points per cell
    lw = float(np.clip(0.08 * cell_pt, 0.7, 2.2))  # line width (points)
    ms = 10.0  # start/goal marker size (points): landmarks, the same on every map
    wp_ms = float(np.clip(0.2 * cell_pt, 0.0, 5.0))  # waypoint dots, dropped on large maps
    fig, ax = subplots(figsize=(fig_w, max(3.0, fig_w * h / w)))
    ax.imshow(occ, cmap=ListedColormap(["#ffffff", "#3b3b3b"]), vmin=0, vmax=1,
              interpolation="nearest" if size <= 128 else "antialiased",
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    if size <= 40:  # cell borders help on small maps
        ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
        ax.grid(which="minor", color="#d0d0d0", linewidth=0.4)
        ax.tick_params(which="minor", length=0)

    if history is not None and len(history) > 0:
        keep = np.unique(np.round(np.linspace(0, len(history) - 1,
                                              min(len(history), MAX_HISTORY_LINES))).astype(int))
        cmap = get_cmap("Blues")
        for n, k in enumerate(keep):
            x, y = _xy(history[k])
            shade = 0.25 + 0.7 * n / max(len(keep) - 1, 1)
            ax.plot(x, y, color=cmap(shade), lw=0.5 * lw, alpha=0.3, zorder=2,
                    label="optimisation (light = early)" if n == len(keep) - 1 else None)
        if waypoints is None:
            waypoints = history[-1]

    if reference_cells is not None and len(reference_cells):
        x, y = _xy(reference_cells)
        ax.plot(x, y, color="#2ca02c", lw=3.5 * lw, alpha=0.35, solid_capstyle="round",
                zorder=3, label="A* reference")
    if cells is not None and len(cells):
        x, y = _xy(cells)
        ax.plot(x, y, color="#9467bd", lw=1.2 * lw, zorder=4, label="cell path")
        c = np.asarray(cells, dtype=int).reshape(-1, 2)
        on_map = (c[:, 0] >= 0) & (c[:, 0] < h) & (c[:, 1] >= 0) & (c[:, 1] < w)
        bad = ~on_map
        bad[on_map] = occ[c[on_map, 0], c[on_map, 1]]
        if bad.any():
            ax.plot(c[bad, 1], c[bad, 0], "x", color="#d62728", ms=float(np.clip(0.7 * cell_pt,
                    3.0, 8.0)), mew=float(np.clip(0.12 * cell_pt, 0.7, 1.5)), zorder=6,
                    label="blocked cell on path")
    if waypoints is not None and len(waypoints):
        x, y = _xy(waypoints)
        ax.plot(x, y, color="#ff7f0e", lw=lw, marker="o" if wp_ms >= 1.5 else None, ms=wp_ms,
                zorder=5,
                label="waypoints (final)")

    ax.plot([start[1]], [start[0]], "o", color="#2ca02c", mec="black", ms=ms, zorder=7,
            label="start")
    ax.plot([goal[1]], [goal[0]], "*", color="#d62728", mec="black", ms=1.5 * ms, zorder=7,
            label="goal")
    ax.set_xlim(-0.5 - 0.02 * w, w - 0.5 + 0.02 * w)  # room for waypoints just off the map
    ax.set_ylim(h - 0.5 + 0.02 * h, -0.5 - 0.02 * h)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, fontsize=8,
              frameon=False)
    return save_figure(fig, path, dpi=130 if size <= 256 else 160)  # >= 2 px per cell


def plot_loss_curves(history: dict[str, Sequence[float]], path: str | os.PathLike, *,
                     title: str = "loss") -> Path:
    """Loss terms per iteration, one line per named term, saved to ``path``.

    The y axis is logarithmic when every value is positive, else symmetric-log with its
    linear range set by the smallest nonzero magnitude (so small terms stay visible).
    """
    fig, ax = subplots(figsize=(6.4, 3.8))
    values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in history.values()]
                            or [np.zeros(0)])
    values = values[np.isfinite(values)]
    for name, ys in history.items():
        ax.plot(np.arange(len(ys)), np.asarray(ys, dtype=np.float64), lw=1.2, label=name)
    if values.size and (values > 0).all():
        ax.set_yscale("log")
    elif values.size and (values != 0).any():
        ax.set_yscale("symlog", linthresh=float(np.abs(values[values != 0]).min()))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if len(history) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.1, which="minor")
    return save_figure(fig, path)
