"""Figures of the rag wing (drawing only; the numbers come from experiment.py / api.py).

Every figure has labelled axes with tick values; arms appear in the note's order (closed
book, full, leave-one-out, split, re-split: :data:`~descentlab.rag.experiment.ARMS`), bars
are means over seeds and each seed is drawn as a point on its bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.core.plotting import get_cmap, save_figure, subplots

QA_PANELS = (
    ("qa_em_train_closed_book", "train facts,\nno retrieval"),
    ("qa_em_train_distractor", "train facts,\nother's passage"),
    ("qa_em_train", "train facts,\nretrieval"),
    ("qa_em_retrieval_only", "retrieval-only\nfacts"),
    ("qa_em_added", "added after\ntraining"),
    ("counterfactual_follow_rate", "counterfactual:\nfollows doc"),
    ("counterfactual_memory_rate", "counterfactual:\nfrom memory"),
)


def ordered_arms(result: dict[str, Any]) -> list[str]:
    """The result's arms in the note's order (:data:`ARMS`), unknown names last."""
    from descentlab.rag.experiment import ARMS

    order = {a: n for n, a in enumerate(ARMS)}
    return sorted(result["variants"], key=lambda a: order.get(a, len(order)))


def _colour(arm: str) -> int:
    """One colour per arm in every figure: its position in :data:`ARMS`."""
    from descentlab.rag.experiment import ARMS

    return list(ARMS).index(arm) if arm in ARMS else len(ARMS)


def _bars(ax, result: dict[str, Any], keys: Sequence[str], labels: Sequence[str]) -> None:
    """Grouped bars (one group per metric, one bar per arm): mean over seeds, each seed a
    black point on its bar."""
    arms = ordered_arms(result)
    colours = get_cmap("tab10")
    width = 0.8 / len(arms)
    x = np.arange(len(keys))
    for n, arm in enumerate(arms):
        v = result["variants"][arm]
        pos = x + (n - (len(arms) - 1) / 2) * width
        ax.bar(pos, [v.get(k, np.nan) for k in keys], width, color=colours(_colour(arm) % 10),
               label=arm)
        rows = v.get("per_seed", [])
        for j, k in enumerate(keys):
            vals = [r.get(k) for r in rows if r.get(k) is not None]
            if vals:
                jitter = np.linspace(-0.25, 0.25, len(vals)) * width if len(vals) > 1 else [0]
                ax.scatter(pos[j] + np.asarray(jitter), vals, s=9, color="k", zorder=3,
                           linewidths=0)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_experiment(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``qa.png`` (exact match by where the fact lives + counterfactual), ``grounding.png``
    (perplexity with/without retrieval, memorisation ratio), ``loss.png`` (training loss)."""
    out = Path(out_dir)
    n_seeds = len(result.get("seeds", [])) or 1
    seeds = f"bars: mean over {n_seeds} seed(s); points: seeds"
    paths = []

    fig, ax = subplots(figsize=(10, 3.8))
    panels = [(k, lab) for k, lab in QA_PANELS  # skip metrics that no arm reports
              if any(v.get(k) is not None and v[k] == v[k] for v in result["variants"].values())]
    _bars(ax, result, [k for k, _ in panels], [lab for _, lab in panels])
    ax.set_ylabel("exact match (fraction of probes)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Cloze QA exact match by where the fact lives ({seeds})", fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    paths.append(save_figure(fig, out / "qa.png"))

    fig, (a1, a2) = subplots(1, 2, figsize=(10.5, 3.6), gridspec_kw={"wspace": 0.4})
    _bars(a1, result, ["ppl_no_retrieval", "ppl_retrieval"], ["no retrieval", "retrieval"])
    a1.set_ylabel("perplexity of retrieval-only docs\n(log scale)")
    _log_axis_with_values(a1)
    _bars(a2, result, ["memorisation_ratio"], ["p_old / (p_old + p_new)"])
    a2.axhline(0.5, color="k", lw=0.8, ls="--")
    a2.set_ylim(0, 1)
    a2.set_ylabel("memorisation ratio\n(1 = memory, 0 = document)")
    a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Does the model use the retrieved document? ({seeds})", fontsize=10)
    paths.append(save_figure(fig, out / "grounding.png"))

    curves = {a: result["loss_curves"][a] for a in ordered_arms(result)}
    paths.append(plot_losses(curves, out / "loss.png", steps=loss_steps(result),
                             title=f"training loss (mean over {n_seeds} seed(s))"))
    return paths


def _log_axis_with_values(ax) -> None:
    """Log y axis with plain tick labels at 1, 2, 5 × 10^n (not only the decades)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def loss_steps(result: dict[str, Any]) -> list[int]:
    """Optimiser step of each loss-curve point (older results: from ``log_every``)."""
    n = len(next(iter(result["loss_curves"].values())))
    steps = result.get("loss_steps")
    if isinstance(steps, list) and len(steps) == n:
        return steps
    every = result.get("log_every", 1)
    return [(i + 1) * every for i in range(n)]


def plot_losses(curves: dict[str, Sequence[float]], path: str | Path, *,
                steps: Sequence[int], title: str = "training loss") -> Path:
    """Loss against optimiser step, one line per name (linear axes, values on both)."""
    fig, ax = subplots(figsize=(6.4, 3.8))
    colours = get_cmap("tab10")
    for name, ys in curves.items():
        ax.plot(steps[: len(ys)], ys, label=name, color=colours(_colour(name) % 10), marker=".",
                ms=3)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("NLL per suffix token (nats)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_training(history: Sequence[dict], path: str | Path, *, title: str) -> Path:
    """The figure of one ``rag train`` run: loss per log record against its step."""
    rows = [r for r in history if "loss" in r]
    return plot_losses({"loss": [r["loss"] for r in rows]}, path,
                       steps=[r["step"] for r in rows], title=title)
