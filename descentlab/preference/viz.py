"""Figures of a preference run, drawn from its log records (``train_log.jsonl``)."""

from __future__ import annotations

import os
from pathlib import Path

from descentlab.core.plotting import save_figure, subplots

# panel title -> metrics drawn in it (only those present in the log)
PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "pdpo/objective", "loss/sft"),
    "implicit rewards": ("rewards/chosen", "rewards/rejected", "rewards/margins"),
    "reward accuracy": ("rewards/accuracies",),
    "sequence log-probs": ("logps/chosen", "logps/rejected"),
    "response length (tokens)": ("lengths/chosen", "lengths/rejected"),
    "oracle reward": ("oracle/reward", "oracle/reward_chosen", "oracle/reward_rejected"),
    "β/γ margin z (own loss)": ("dpo_bg/margins", "pdpo/margins", "pdpo_offline/margins"),
    "held-out loss and margins": ("eval/loss", "eval/rewards/margins"),
    "held-out reward accuracy": ("eval/rewards/accuracies",),
    "held-out log π − log π₀": ("eval/logps_delta/chosen", "eval/logps_delta/rejected",
                                "eval/logps_delta/margins"),
}


def plot_training(history: list[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """One PNG with a panel per metric group against the optimiser step; None if no log."""
    if not history:
        return None
    panels = {t: [k for k in keys if any(k in r for r in history)] for t, keys in PANELS.items()}
    panels = {t: ks for t, ks in panels.items() if ks}
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, panels.items()):
        for k in keys:
            pts = [(r["step"], r[k]) for r in history if r.get(k) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=k)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
