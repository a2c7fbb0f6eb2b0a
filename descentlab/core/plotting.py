"""Matplotlib on the Agg backend and atomic figure saving."""

from __future__ import annotations

import os
from pathlib import Path


def plt():
    """matplotlib.pyplot on the non-interactive Agg backend (imported lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    return pyplot


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically as PNG (or by suffix) and close it."""
    from descentlab.core.io import atomic_write

    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt().close(fig)
    return path


def plot_curves(curves: dict[str, list[float]], path: str | os.PathLike, *, title: str = "",
                xlabel: str = "step", ylabel: str = "", logy: bool = False) -> Path:
    """One line per named curve, saved to ``path``."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 3.6))
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
