"""The loss settings the experiments compare, as one registry built from the losses registry.

A *variant* is a registered loss (:data:`descentlab.preference.losses.LOSSES`) with its
:class:`LossParams` and how it is trained (offline on π₀ pairs, or on-policy on pairs sampled
from π and labelled by the true reward). Names:

``dpo``            DPO, β (γ = β)
``dpo_bg_g<r>``    generalised DPO with γ = r·β (note D; r = γ/β: 0 = reference-free,
                   < 1 flattens π₀, > 1 sharpens it; ``dpo_bg_g1`` is DPO again)
``ipo``            IPO with τ = β (target log-ratio margin 1/(2β); per-token log-ratios,
                   TRL's, unless ``ipo_logratio="sum"``)
``simpo``          SimPO (reference-free, length-normalised, margin)
``rdpo``           R-DPO (length-difference penalty α), when asked for
``pdpo``           J_PDPO, on-policy: pairs sampled from π, labels from the true reward,
                   score-function surrogate (note C), leave-one-out baseline by default
``pdpo_offline``   J_PDPO from π₀ data by self-normalised importance weights (note C)
``pdpo_exact``     J_PDPO itself, the expectation over all pairs under π taken exactly
                   (ℓ of ``dpo_bg``); only where responses can be enumerated (the bandit)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from descentlab.core.errors import InputError
from descentlab.preference.losses import LOSSES, LossParams


@dataclass(frozen=True)
class Variant:
    """One compared setting: registry loss ``loss`` with ``params``, trained in ``mode``:
    ``offline`` (π₀ pairs), ``onpolicy`` (pairs sampled from the current π, labelled by the
    true reward) or ``exact`` (expected loss over every pair under π, enumerated)."""

    loss: str
    params: LossParams
    mode: str = "offline"

    @property
    def onpolicy(self) -> bool:
        return self.mode != "offline"


def _ratio_name(r: float) -> str:
    return f"dpo_bg_g{r:g}"


def build_variants(names: tuple[str, ...], *, beta: float, gamma_ratios: tuple[float, ...],
                   simpo_beta: float, simpo_margin: float, ipo_beta: float | None = None,
                   rdpo_alpha: float = 0.0, baseline: str = "loo",
                   ipo_logratio: str = "mean", allowed: tuple[str, ...] | None = None) -> dict[str, Variant]:
    """``{name: Variant}`` for the requested ``names`` (in that order).

    ``names`` may contain ``dpo_bg`` (expands to one variant per γ/β in ``gamma_ratios``) or
    explicit ``dpo_bg_g<r>``. ``allowed``: modes this experiment can run (default all). An
    unknown or unsupported name is an InputError listing the choices.
    """
    base = LossParams(beta=beta, baseline=baseline)
    table: dict[str, Variant] = {
        "dpo": Variant("dpo", base),
        **{_ratio_name(r): Variant("dpo_bg", dataclasses.replace(base, gamma=r * beta))
           for r in gamma_ratios},
        "ipo": Variant("ipo", dataclasses.replace(base, beta=ipo_beta or beta,
                                                  ipo_logratio=ipo_logratio)),
        "simpo": Variant("simpo", LossParams(beta=simpo_beta, simpo_margin=simpo_margin)),
        "rdpo": Variant("rdpo", dataclasses.replace(base, rdpo_alpha=rdpo_alpha)),
        "pdpo": Variant("pdpo", base, "onpolicy"),
        "pdpo_offline": Variant("pdpo_offline", base),
        "pdpo_exact": Variant("dpo_bg", base, "exact"),
    }
    out: dict[str, Variant] = {}
    for name in names:
        if name == "dpo_bg":
            out.update({_ratio_name(r): table[_ratio_name(r)] for r in gamma_ratios})
            continue
        if name.startswith("dpo_bg_g") and name not in table:
            try:
                r = float(name[len("dpo_bg_g"):])
            except ValueError:
                r = -1.0
            if r >= 0:
                table[name] = Variant("dpo_bg", dataclasses.replace(base, gamma=r * beta))
        if name in table and allowed is not None and table[name].mode not in allowed:
            raise InputError(f"loss setting {name!r} ({table[name].mode}) is not available in "
                             "this experiment", where="losses")
        if name not in table:
            raise InputError(f"unknown loss setting {name!r}; choose from "
                             f"{', '.join(['dpo_bg', *table])}", where="losses")
        out[name] = table[name]
    for v in out.values():
        assert v.loss in LOSSES and (v.mode == "onpolicy") == LOSSES[v.loss].onpolicy
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value) of ``values``; None values are skipped, a
    non-finite value makes both NaN."""
    vals = [float(v) for v in values if v is not None]
    if not vals or not all(math.isfinite(v) for v in vals):
        return float("nan"), float("nan")          # a diverged run: JSON null, table "nan"
    m = math.fsum(vals) / len(vals)
    try:
        sd = math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1)) \
            if len(vals) > 1 else 0.0
    except OverflowError:
        sd = float("inf")
    return m, sd


def aggregate(per_seed: list[dict[str, float]], histories: list[list[dict]],
              fields: tuple[str, ...]) -> dict:
    """Across seeds: ``FIELD`` (mean) and ``FIELD_std`` for each field, ``per_seed``, and
    ``curves``: ``{metric: {"mean": [...], "std": [...]}}`` over the records of the
    histories (aligned by position; every history has the same records)."""
    out: dict = {}
    for f in fields:
        out[f], out[f + "_std"] = mean_std([p.get(f) for p in per_seed])
    out["per_seed"] = per_seed
    n = min(len(h) for h in histories)
    out["curves"] = {}
    for k in histories[0][0]:
        if k == "step":
            continue
        stats = [mean_std([h[i].get(k) for h in histories]) for i in range(n)]
        out["curves"][k] = {"mean": [m for m, _ in stats], "std": [s for _, s in stats]}
    return out
