"""Figures of the grounding experiment (drawing only; the numbers come from experiment.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from descentlab.core.plotting import plot_curves, save_figure, subplots

QA_PANELS = (
    ("qa_em_train_closed_book", "train facts,\nno retrieval"),
    ("qa_em_train_distractor", "train facts,\nother's passage"),
    ("qa_em_train", "train facts,\nretrieval"),
    ("qa_em_retrieval_only", "retrieval-only\nfacts"),
    ("qa_em_added", "added after\ntraining"),
    ("counterfactual_follow_rate", "counterfactual:\nfollows doc"),
    ("counterfactual_memory_rate", "counterfactual:\nfrom memory"),
)


def _bars(ax, result: dict[str, Any], keys: list[str], labels: list[str]) -> None:
    arms = list(result["variants"])
    width = 0.8 / len(arms)
    x = np.arange(len(keys))
    for n, arm in enumerate(arms):
        v = result["variants"][arm]
        means = [v.get(k, np.nan) for k in keys]
        stds = [v.get(f"{k}_std", 0.0) for k in keys]
        ax.bar(x + (n - (len(arms) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=arm)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_experiment(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``qa.png`` (exact match by where the fact lives + counterfactual), ``grounding.png``
    (perplexity with/without retrieval, memorisation ratio), ``loss.png`` (training loss)."""
    out = Path(out_dir)
    n_seeds = len(result.get("seeds", [])) or 1
    paths = []

    fig, ax = subplots(figsize=(10, 3.8))
    panels = [(k, lab) for k, lab in QA_PANELS  # skip metrics that no arm reports
              if any(v.get(k) is not None and v[k] == v[k] for v in result["variants"].values())]
    _bars(ax, result, [k for k, _ in panels], [lab for _, lab in panels])
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Cloze QA exact match by where the fact lives (mean ± std over {n_seeds} "
                 "seed(s))")
    ax.legend(fontsize=7, ncol=3)
    paths.append(save_figure(fig, out / "qa.png"))

    fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.6))
    _bars(a1, result, ["ppl_no_retrieval", "ppl_retrieval"], ["no retrieval", "retrieval"])
    a1.set_ylabel("perplexity (retrieval-only docs)")
    a1.set_yscale("log")
    _bars(a2, result, ["memorisation_ratio"], ["p_old / (p_old + p_new)"])
    a2.axhline(0.5, color="k", lw=0.8, ls="--")
    a2.set_ylim(0, 1)
    a2.set_ylabel("memorisation ratio")
    a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Does the model use the retrieved document?")
    paths.append(save_figure(fig, out / "grounding.png"))

    every = result.get("log_every", 1)
    paths.append(plot_curves(result["loss_curves"], out / "loss.png",
                             title="training loss (suffix tokens)",
                             xlabel=f"log step (x{every} optimiser steps)", ylabel="NLL",
                             logy=True))
    return paths
