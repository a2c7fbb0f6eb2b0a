"""Planning figures: written atomically as PNGs, with the map drawn where it belongs."""

from __future__ import annotations

import numpy as np

from descentlab.planning.grid import NOTE_GOAL, NOTE_START, note_map
from descentlab.planning.search import astar
from descentlab.planning.viz import plot_loss_curves, plot_plan


def test_plot_plan_writes_png_and_leaves_no_temp_files(tmp_path):
    from PIL import Image

    grid = note_map()
    ref = astar(grid.occ, NOTE_START, NOTE_GOAL).cells
    rng = np.random.default_rng(0)
    final = ref.astype(float) + rng.normal(0, 0.1, ref.shape)  # (L, 2)
    history = [final + rng.normal(0, 3.0 * (1 - a), final.shape) for a in np.linspace(0, 1, 200)]
    out = plot_plan(grid.occ, NOTE_START, NOTE_GOAL, tmp_path / "fig" / "plan.png",
                    history=history, cells=ref, reference_cells=ref, title="note")
    assert out == tmp_path / "fig" / "plan.png"
    assert [p.name for p in (tmp_path / "fig").iterdir()] == ["plan.png"]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 400


def test_obstacles_are_dark_rows_down_columns_across(tmp_path):
    """Blocking one half of a map darkens that half of the picture: left/right halves
    (columns) move the darkened pixels horizontally, top/bottom halves (rows) vertically."""
    from PIL import Image

    def render(occ, name):
        out = plot_plan(occ, (0, 0), (9, 9), tmp_path / name)  # same figure layout each time
        with Image.open(out) as im:
            return np.asarray(im.convert("L"), dtype=float)  # (H_px, W_px)

    free = render(np.zeros((10, 10), dtype=bool), "free.png")
    centroids = {}
    for name, sl in [("left", np.s_[:, :5]), ("right", np.s_[:, 5:]),
                     ("top", np.s_[:5, :]), ("bottom", np.s_[5:, :])]:
        occ = np.zeros((10, 10), dtype=bool)
        occ[sl] = True
        img = render(occ, f"{name}.png")
        assert img.shape == free.shape
        darker = free - img > 100  # pixels the obstacles turned dark
        assert darker.sum() > 0.05 * darker.size
        assert (img - free > 100).sum() < 0.01 * darker.sum()  # nothing turned light
        r, c = np.nonzero(darker)
        centroids[name] = (r.mean(), c.mean())
    assert centroids["left"][1] + 50 < centroids["right"][1]
    assert centroids["top"][0] + 50 < centroids["bottom"][0]


def test_plot_loss_curves(tmp_path):
    from PIL import Image

    out = plot_loss_curves({"total": list(np.exp(-np.arange(50) / 10.0)),
                            "collision": [0.0] * 10 + [1e-3] * 40}, tmp_path / "loss.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
