"""Pictures of a navigation run: an animated GIF of every step and a final figure.

Each GIF frame has two panels: the TRUE map (walls dark, unseen walls lighter) and the bot's
ESTIMATE (obstacle probability as grey level, unseen cells tinted blue); both show the
bot (red), the path so far (orange), the current plan (blue: its cell path; dark blue: the
continuous waypoints of the gradient planner) and the goal (green). Frames are drawn with
Pillow directly (one array per frame, no figure per step). Large maps are cropped to the
region the run touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from descentlab.core.io import atomic_write
from descentlab.core.plotting import save_figure, subplots

MAX_FRAMES = 150
HOLD_FRAMES = 6  # the last frame shows this many frame durations
PANEL_PX = 360  # target panel size in pixels

WALL = np.array([40, 40, 40], dtype=np.float64)
WALL_UNSEEN = np.array([150, 150, 150], dtype=np.float64)
FREE = np.array([255, 255, 255], dtype=np.float64)
UNSEEN_TINT = np.array([215, 228, 245], dtype=np.float64)
BOT, PATH, PLAN, WAYPOINTS, GOAL = "#d62728", "#ff7f0e", "#6baed6", "#08306b", "#2ca02c"


def crop_box(shape: tuple[int, int], points: list[np.ndarray], margin: int = 8
             ) -> tuple[slice, slice]:
    """The rows/columns covering every point (N_k, 2) plus a margin, clipped to the map."""
    h, w = shape
    if max(h, w) <= 96:
        return slice(0, h), slice(0, w)
    pts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points])
    r0, c0 = np.floor(pts.min(0)).astype(int) - margin
    r1, c1 = np.ceil(pts.max(0)).astype(int) + margin + 1
    return slice(max(0, r0), min(h, r1)), slice(max(0, c0), min(w, c1))


def _true_rgb(occ: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(h, w) -> (h, w, 3): walls dark where seen, lighter where not, free white."""
    rgb = np.where(occ[..., None], np.where(seen[..., None], WALL, WALL_UNSEEN), FREE)
    return rgb


def _estimate_rgb(prob: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(h, w) prob in [0, 1] -> (h, w, 3): grey level by probability, unseen tinted."""
    grey = (1.0 - prob)[..., None] * (FREE - WALL) + WALL  # (h, w, 3)
    return np.where(seen[..., None], grey, 0.5 * grey + 0.5 * UNSEEN_TINT)


def _panel(rgb: np.ndarray, scale: int, box: tuple[slice, slice], pos, goal, path, plan_cells,
           plan_wp):
    """One panel as a Pillow image: the cell colours upscaled, then the overlays."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.repeat(np.repeat(rgb.astype(np.uint8), scale, 0), scale, 1))
    draw = ImageDraw.Draw(img)
    r0, c0 = box[0].start, box[1].start

    def xy(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return [((c - c0 + 0.5) * scale, (r - r0 + 0.5) * scale) for r, c in pts]

    width = max(1, scale // 4)
    if plan_cells is not None and len(plan_cells) > 1:
        draw.line(xy(plan_cells), fill=PLAN, width=width)
    if plan_wp is not None and len(plan_wp) > 1:
        draw.line(xy(plan_wp), fill=WAYPOINTS, width=max(1, width // 2))
    if len(path) > 1:
        draw.line(xy(path), fill=PATH, width=width + 1)
    rad = max(2.0, 0.45 * scale)
    for point, colour in ((goal, GOAL), (pos, BOT)):
        (x, y), = xy([point])
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=colour)
    return img


def save_gif(true_occ: np.ndarray, result, start, goal, path: str | os.PathLike,
             fps: float = 6.0) -> Path:
    """Animate ``result.frames`` (a NavResult run with ``record=True``) into a GIF."""
    from PIL import Image, ImageDraw

    frames = result.frames
    if not frames:
        raise ValueError("the run recorded no frames (navigate(..., record=True))")
    keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES)).round()
                     .astype(int))
    box = crop_box(true_occ.shape, [result.path, np.array([start, goal])])
    occ = true_occ[box]
    scale = max(2, PANEL_PX // max(occ.shape))
    # path so far at frame t: the executed path up to the frame's position
    steps = [tuple(p) for p in result.path.tolist()]
    images = []
    k_path = 0
    for t in keep:
        f = frames[t]
        while k_path < len(steps) - 1 and steps[k_path] != tuple(f.pos):
            k_path += 1
        so_far = result.path[:k_path + 1]
        seen = f.seen[box]
        left = _panel(_true_rgb(occ, seen), scale, box, f.pos, goal, so_far, f.plan_cells,
                      f.plan_waypoints)
        right = _panel(_estimate_rgb(f.prob[box] / 255.0, seen), scale, box, f.pos, goal,
                       so_far, f.plan_cells, f.plan_waypoints)
        gap, head = 8, 18
        canvas = Image.new("RGB", (2 * left.width + gap, left.height + head), "white")
        canvas.paste(left, (0, head))
        canvas.paste(right, (left.width + gap, head))
        ImageDraw.Draw(canvas).text((4, 3), f"step {t + 1}/{len(frames)}   left: true map, "
                                             f"right: estimate   bot red, path orange, "
                                             f"plan blue, goal green", fill="black")
        images.append(canvas.convert("P", palette=Image.ADAPTIVE, colors=64))
    durations = [int(1000 / fps)] * len(images)
    durations[-1] *= HOLD_FRAMES  # hold the last frame
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        images[0].save(fh, format="GIF", save_all=True, append_images=images[1:],
                       duration=durations, loop=0)
    return path


def plot_final(true_occ: np.ndarray, result, start, goal, path: str | os.PathLike,
               prob: np.ndarray | None = None, seen: np.ndarray | None = None,
               title: str = "") -> Path:
    """Final figure: true map with the executed path and the optimal (A*) path; the final
    estimate beside it. prob/seen (H, W): the final estimate (default: the last frame's)."""
    from descentlab.planning.search import astar

    if prob is None and result.frames:
        prob, seen = result.frames[-1].prob / 255.0, result.frames[-1].seen
    opt = astar(true_occ, tuple(start), tuple(goal))
    box = crop_box(true_occ.shape, [result.path, np.array([start, goal])])
    r0, c0 = box[0].start, box[1].start
    h, w = true_occ[box].shape
    extent = (c0 - 0.5, c0 + w - 0.5, r0 + h - 0.5, r0 - 0.5)
    panels = 2 if prob is not None else 1
    fig, axes = subplots(1, panels, figsize=(5.2 * panels, 5.2 * h / w + 0.6),
                                squeeze=False)
    seen_box = seen[box] if seen is not None else np.ones((h, w), dtype=bool)
    axes[0, 0].imshow(_true_rgb(true_occ[box], seen_box).astype(np.uint8), extent=extent,
                      interpolation="nearest")
    axes[0, 0].set_title("true map (grey walls: never seen)")
    if prob is not None:
        axes[0, 1].imshow(_estimate_rgb(prob[box], seen_box).astype(np.uint8), extent=extent,
                          interpolation="nearest")
        axes[0, 1].set_title("final estimate (blue tint: unseen)")
    lw = float(np.clip(300.0 / max(h, w), 0.8, 3.0))
    for ax in axes[0]:
        if opt is not None:
            ax.plot(opt.cells[:, 1], opt.cells[:, 0], color=GOAL, lw=lw, alpha=0.5,
                    label=f"optimal {opt.length:.1f}")
        ax.plot(result.path[:, 1], result.path[:, 0], color=PATH, lw=lw,
                label=f"travelled {result.travelled:.1f}")
        ax.plot([start[1]], [start[0]], "o", color=BOT, ms=7, label="start")
        ax.plot([goal[1]], [goal[0]], "*", color=GOAL, ms=11, label="goal")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title or (f"{'reached' if result.success else 'failed: ' + result.reason}"
                           f" in {result.steps} steps, {result.bumps} bumps, "
                           f"{result.replans} replans"), fontsize=10)
    return save_figure(fig, path)
