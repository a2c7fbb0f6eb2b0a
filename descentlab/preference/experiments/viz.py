"""Figures of the preference experiments, drawn from their result dicts (no computation)."""

from __future__ import annotations

from pathlib import Path

from descentlab.core.plotting import get_cmap, save_figure, subplots

BANDIT_PANELS: dict[str, str] = {
    "pi_chosen": "π(y₊), mean over data pairs",
    "pi_rejected": "π(y₋), mean over data pairs",
    "offdata_mass": "mass on never-sampled responses",
    "expected_reward": "expected true reward",
    "kl": "KL(π‖π₀)",
    "entropy": "entropy H(π)",
    "best_mass": "mass on the best response",
    "j_pdpo": "J_PDPO (exact, γ = β)",
}

LENGTH_PANELS: dict[str, str] = {
    "gen_length": "mean generated length (tokens)",
    "reward": "true reward of samples",
    "heldout_accuracy": "held-out preference accuracy",
    "train_logp_chosen": "log π(y₊), training pairs",
    "train_logp_rejected": "log π(y₋), training pairs",
    "kl": "KL(π‖π₀) estimate on samples",
}


def _style(i: int) -> dict:
    return {"color": get_cmap("tab10")(i % 10), "linestyle": "-" if i < 10 else "--"}


def _curve_panels(result: dict, panels: dict[str, str], steps: list[int], path: Path,
                  title: str, refs: dict[str, dict[str, float]] | None = None) -> Path:
    """One panel per metric, one line per loss (mean over seeds, ± std band)."""
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels.items()):
        for i, (name, entry) in enumerate(result["losses"].items()):
            c = entry["curves"].get(key)
            if c is None:
                continue
            xs = steps[:len(c["mean"])]
            ax.plot(xs, c["mean"], label=name, lw=1.3, **_style(i))
            lo = [m - s for m, s in zip(c["mean"], c["std"])]
            hi = [m + s for m, s in zip(c["mean"], c["std"])]
            ax.fill_between(xs, lo, hi, alpha=0.12, color=_style(i)["color"])
        for j, (rname, vals) in enumerate((refs or {}).items()):
            if key in vals:
                ax.axhline(vals[key], color="k", lw=0.8, ls=(":", "-.")[j % 2], label=rname)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * ((len(labels) - 1) // 6)))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(labels) - 1) // 6), 1, 1))
    return save_figure(fig, path)


def plot_bandit(result: dict, out_dir: Path) -> list[Path]:
    """``bandit_curves.png``: the tracked quantities over training, every loss, with π₀ and
    the KL-regularised optimum π* ∝ π₀ exp(r/β) as reference lines."""
    cfg = result["config"]
    refs = {"π₀": result["reference"]["pi0"],
            "π* ∝ π₀exp(r/β)": result["reference"]["rlhf_optimum"]}
    title = (f"bandit ({cfg['policy']}): {cfg['prompts']} prompts × {cfg['responses']} responses,"
             f" {cfg['pairs_per_prompt']} pairs/prompt, β={cfg['beta']}, "
             f"{len(result['seeds'])} seeds (mean ± std)")
    return [_curve_panels(result, BANDIT_PANELS, result["steps"],
                          out_dir / f"bandit_{cfg['policy']}_curves.png", title, refs)]


def plot_length(result: dict, out_dir: Path) -> list[Path]:
    """``length_curves.png`` (evaluation metrics over training), ``length_gradnorm.png``
    (per-example gradient norm against response length at π₀, every loss) and
    ``length_per_seed.png`` (final length change, reward and KL of every seed)."""
    cfg = result["config"]
    title = (f"length lab: {cfg['n_train_pairs']} pairs, {cfg['steps']} steps, "
             f"{len(result['seeds'])} seed(s) (mean ± std)")
    out = [_curve_panels(result, LENGTH_PANELS, result["eval_steps"],
                         out_dir / "length_curves.png", title)]
    diag = result.get("gradnorm_scatter")
    if diag:
        fig, (a0, a1) = subplots(1, 2, figsize=(11, 3.8))
        a0.scatter(diag["seq_length"], diag["seq_norm"], s=8, alpha=0.6)
        a0.set_title(f"‖∇log π(y)‖ vs |y| at π₀ (log-log slope {diag['seq_slope']:.2f})",
                     fontsize=9)
        a0.set_xlabel("response tokens |y|", fontsize=8)
        for i, (name, d) in enumerate(diag["losses"].items()):
            mean = sum(d["norm"]) / max(1, len(d["norm"]))
            a1.scatter(diag["pair_length"], [v / mean if mean else 0.0 for v in d["norm"]],
                       s=8, alpha=0.5, color=_style(i)["color"],
                       label=f"{name} (slope {d['slope']:.2f})")
        a1.set_title("per-example ‖∇ℓ‖ / its mean vs |y₊|+|y₋| at π₀", fontsize=9)
        a1.set_xlabel("pair tokens |y₊|+|y₋|", fontsize=8)
        a1.legend(fontsize=7, loc="upper left")
        for ax in (a0, a1):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        fig.suptitle("the basic-calculus diagnostic: per-example gradient norm against "
                     "response length (slope = fitted exponent)", fontsize=10)
        fig.tight_layout()
        out.append(save_figure(fig, out_dir / "length_gradnorm.png"))
    out.append(plot_per_seed(result, ("mean_length_delta", "final_expected_reward", "kl"),
                             out_dir / "length_per_seed.png"))
    return out


def plot_per_seed(result: dict, fields: tuple[str, ...], path: Path) -> Path:
    """One panel per final field: every seed's value (dots) and the mean (bar) per loss —
    shows outlier seeds that a mean ± std hides."""
    names = list(result["losses"])
    fig, axes = subplots(1, len(fields), figsize=(4.6 * len(fields), 3.6), squeeze=False)
    for ax, f in zip(axes.flat, fields):
        for i, name in enumerate(names):
            vals = [p[f] for p in result["losses"][name]["per_seed"] if p.get(f) is not None]
            n = len(vals)
            xs = [i + 0.25 * (k - (n - 1) / 2) / max(1, n - 1) for k in range(n)]
            ax.scatter(xs, vals, s=14, color=_style(i)["color"], zorder=3)
            if vals:
                ax.hlines(sum(vals) / n, i - 0.3, i + 0.3, color="k", lw=1.2, zorder=4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{f} (dots: seeds, bar: mean)", fontsize=9)
        ax.axhline(0, color="grey", lw=0.6)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, path)
