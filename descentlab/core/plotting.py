"""Figures as objects and atomic figure saving, with no global matplotlib state.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot, so
the library neither switches the process's backend nor keeps figures open: a notebook's
inline plots keep working, and ``fig`` can be shown there (it renders as an image).
"""

from __future__ import annotations

import os
from pathlib import Path


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.4, 4.8),
             squeeze: bool = True, **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a standalone Figure (no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def get_cmap(name: str):
    """A registered colormap by name."""
    import matplotlib

    return matplotlib.colormaps[name]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically as PNG (or by suffix)."""
    from descentlab.core.io import atomic_write

    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def plot_curves(curves: dict[str, list[float]], path: str | os.PathLike, *, title: str = "",
                xlabel: str = "step", ylabel: str = "", logy: bool = False) -> Path:
    """One line per named curve, saved to ``path``."""
    fig, ax = subplots(figsize=(6, 3.6))
    for name, ys in curves.items():
        ax.plot(range(len(ys)), ys, label=name)
    if logy:
        ax.set_yscale("symlog")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
