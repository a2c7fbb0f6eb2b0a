"""Preference losses: one registry, one tensor-only signature (SPEC parts C–D).

Every loss takes a :class:`Logps` (sequence log-probs and response lengths, plain tensors
shaped ``(B,)``) and :class:`LossParams`, and returns a :class:`LossTerms`: per-example
losses ``(B,)`` and the implicit rewards of chosen and rejected ``(B,)`` (plus any extra
metrics). :func:`preference_loss` adds the optional SFT term and the metrics under TRL's
names. Notation (note D): Δπ = log π(y₊) − log π(y₋), Δπ₀ the same under the frozen
reference, z the argument of the sigmoid, ℓ = softplus(−z) = −log σ(z), always computed as
``-F.logsigmoid(z)`` (exact in the tails; ``F.softplus`` returns its input unchanged above
20, which drops ℓ's ``log1p(e^{−|z|})`` part and gives the gradient 1 instead of σ(−z)).

No model is needed: the bandit and length experiments call these on raw tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError


class Logps(NamedTuple):
    """Sequence log-probs (sums over response tokens) and response lengths (the number of
    scored response tokens), all ``(B,)``. Sums and counts are all any convention needs:
    per-token means are ``sum / len`` and TRL's batch token mean is ``Σ sum / Σ len``.

    ``ref_*`` may be None for reference-free losses (``simpo``) or when γ = 0.
    """

    policy_chosen: Tensor
    policy_rejected: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None
    chosen_len: Tensor | None = None
    rejected_len: Tensor | None = None


class LossTerms(NamedTuple):
    """Per-example ``losses (B,)``, implicit ``chosen_rewards``/``rejected_rewards (B,)``
    (detached) and ``extra`` metrics (floats or 0-dim tensors)."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    extra: dict = {}


@dataclass
class LossParams:
    """Parameters of the preference losses (each loss reads the ones it needs)."""

    beta: float = option(0.1, "β: scale of the policy log-ratio (typical 0.01-0.5; SimPO 2-2.5)",
                         gt=0)
    gamma: float | None = option(None, "γ: scale of the reference log-ratio in dpo_bg/pdpo "
                                 "(default: = β, i.e. standard DPO; 0 = reference-free)", min=0)
    label_smoothing: float = option(0.0, "ε: assumed label-flip rate, read by dpo (conservative "
                                    "DPO, as TRL <= 0.28's sigmoid) and robust only; other "
                                    "losses ignore it, with a warning (0 <= ε < 0.5)", min=0)
    simpo_margin: float = option(0.5, "SimPO target reward margin γ_SimPO (typical 0.3-1.6)")
    rdpo_alpha: float = option(0.0, "R-DPO length-difference weight α (typical 0.005-0.05)")
    ipo_logratio: str = option("mean", "IPO's log-ratios: per-token means, log π/π₀ divided by "
                               "the response's token count (TRL's ipo), or sequence sums (the "
                               "paper's Eq. 17 as written)",
                               choices=lambda: IPO_LOGRATIOS)
    sft_weight: float = option(0.0, "weight of an added SFT term: NLL of the chosen responses",
                               min=0)
    sft_average: str = option("tokens", "SFT term's average: one mean over every chosen token "
                              "of the batch (TRL's sft loss / rpo_alpha, CPO's cpo_alpha), or "
                              "the mean of per-sequence means",
                              choices=lambda: SFT_AVERAGES)
    baseline: str = option("loo", "pdpo score-function baseline b: leave-one-out mean of the "
                           "other pairs' losses (unbiased), none (unbiased, noisier), or the "
                           "batch mean including the pair itself (BIASED: shrinks the score "
                           "term by (n-1)/n for n pairs)",
                           choices=lambda: BASELINES)

    def __post_init__(self) -> None:
        check_config(self)
        if not self.label_smoothing < 0.5:
            raise field_error(self, "label_smoothing",
                              f"must be < 0.5, got {self.label_smoothing}")

    @property
    def gamma_(self) -> float:
        """γ, defaulting to β."""
        return self.beta if self.gamma is None else self.gamma


def _need_ref(lp: Logps, name: str) -> tuple[Tensor, Tensor]:
    if lp.ref_chosen is None or lp.ref_rejected is None:
        raise ValueError(f"loss {name!r} needs reference log-probs")
    return lp.ref_chosen, lp.ref_rejected


def _need_len(lp: Logps, name: str) -> tuple[Tensor, Tensor]:
    if lp.chosen_len is None or lp.rejected_len is None:
        raise ValueError(f"loss {name!r} needs response lengths")
    return lp.chosen_len.to(lp.policy_chosen.dtype), lp.rejected_len.to(lp.policy_chosen.dtype)


def _ratios(lp: Logps, name: str) -> tuple[Tensor, Tensor]:
    """log π/π₀ of chosen and rejected, ``(B,)`` each."""
    rc, rr = _need_ref(lp, name)
    return lp.policy_chosen - rc, lp.policy_rejected - rr


def _bg_logits(lp: Logps, p: LossParams, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """z = β Δπ − γ Δπ₀ and the implicit rewards under TRL's convention: β log π/π₀ when
    reference log-probs are given (comparable with DPO's and TRL's ``rewards/*``; their
    difference is z only when γ = β), else β log π (reference-free, as TRL's CPO)."""
    g = p.gamma_
    has_ref = lp.ref_chosen is not None and lp.ref_rejected is not None
    if g == 0:
        rc = rr = torch.zeros_like(lp.policy_chosen)
    else:
        rc, rr = _need_ref(lp, name)
    z = (p.beta * lp.policy_chosen - g * rc) - (p.beta * lp.policy_rejected - g * rr)
    if has_ref:
        chosen = p.beta * (lp.policy_chosen - lp.ref_chosen)
        rejected = p.beta * (lp.policy_rejected - lp.ref_rejected)
    else:
        chosen, rejected = p.beta * lp.policy_chosen, p.beta * lp.policy_rejected
    return z, chosen, rejected


def _bg_extra(name: str, z: Tensor) -> dict[str, Tensor]:
    """The β/γ loss's own margin z = β Δπ − γ Δπ₀ and how often it is positive, under the
    loss's name (TRL's ``rewards/margins`` / ``rewards/accuracies`` hold β(Δπ − Δπ₀))."""
    z = z.detach()
    return {f"{name}/margins": z.mean(), f"{name}/accuracies": (z > 0).float().mean()}


def _nll_sigmoid(z: Tensor) -> Tensor:
    """−log σ(z) = softplus(−z), exact for every z (``F.softplus`` is not above 20)."""
    return -F.logsigmoid(z)


def dpo(lp: Logps, p: LossParams) -> LossTerms:
    """DPO (Rafailov et al. 2023, Eq. 7), with conservative-DPO label smoothing ε (cDPO,
    Mitchell 2023).

    z = β (Δπ − Δπ₀);  ℓ = −(1−ε) log σ(z) − ε log σ(−z). With ε = 0 this is TRL's
    ``sigmoid`` in every version. With ε > 0 it is TRL ≤ 0.28's ``sigmoid`` with
    ``label_smoothing=ε``; TRL ≥ 0.29 ignores ε for ``sigmoid`` (plain DPO), so with ε > 0
    the two differ. Unbiased label-noise correction: :func:`robust`. Rewards: β log π/π₀
    (TRL's ``rewards/chosen``).
    """
    sc, sr = _ratios(lp, "dpo")
    z = p.beta * (sc - sr)
    eps = p.label_smoothing
    losses = (1 - eps) * _nll_sigmoid(z) + eps * _nll_sigmoid(-z)
    return LossTerms(losses, p.beta * sc.detach(), p.beta * sr.detach())


def dpo_bg(lp: Logps, p: LossParams) -> LossTerms:
    """Generalised DPO with separate β and γ (note D, SPEC C–D).

    z = β Δπ − γ Δπ₀;  ℓ = softplus(−z).  ∂ℓ/∂log π(y±) = ∓β σ(−z); γ enters only through
    the weight σ(−z). γ = β is :func:`dpo`; γ/β acts as an inverse temperature on π₀
    (> 1 sharpens, < 1 flattens, 0 = reference-free). Rewards (``rewards/*``, TRL's names
    and values): β log π/π₀ when the reference is there (γ > 0), else β log π; the loss's own
    margin z is ``dpo_bg/margins`` and P(z > 0) ``dpo_bg/accuracies``.
    """
    z, c, r = _bg_logits(lp, p, "dpo_bg")
    return LossTerms(_nll_sigmoid(z), c.detach(), r.detach(), _bg_extra("dpo_bg", z))


def _ipo_mean(lp: Logps, sc: Tensor, sr: Tensor) -> tuple[Tensor, Tensor, dict]:
    lc, lr = _need_len(lp, "ipo")
    return sc / lc.clamp(min=1), sr / lr.clamp(min=1), _per_token_logps(lp, lc, lr)


IPO_LOGRATIOS: dict[str, Callable[[Logps, Tensor, Tensor], tuple[Tensor, Tensor, dict]]] = {
    "mean": _ipo_mean,                          # log π/π₀ per token (B,): TRL's ipo
    "sum": lambda lp, sc, sr: (sc, sr, {}),     # sequence sums (B,): Eq. 17 as written
}


def ipo(lp: Logps, p: LossParams) -> LossTerms:
    """IPO (Azar et al. 2023, Eq. 17): ℓ = (h − 1/(2β))², β as the paper's τ.

    h = h₊ − h₋ with h the log-ratio log π/π₀ of a response, by ``p.ipo_logratio``:
    ``mean`` (default) divides it by the response's token count, h = s/|y|, as TRL's ``ipo``
    (which averages the policy and the reference log-probs per token; TRL's comment:
    confirmed with the IPO authors); ``sum`` keeps sequence sums, the paper's formula read
    literally. Rewards: β·h (per token with ``mean``, as TRL's); with ``mean`` the
    ``logps/*`` metrics are per-token means too (TRL's values under TRL's names).
    """
    sc, sr = _ratios(lp, "ipo")
    hc, hr, extra = IPO_LOGRATIOS[p.ipo_logratio](lp, sc, sr)
    losses = (hc - hr - 1 / (2 * p.beta)) ** 2
    return LossTerms(losses, p.beta * hc.detach(), p.beta * hr.detach(), extra)


def _per_token_logps(lp: Logps, lc: Tensor, lr: Tensor) -> dict[str, Tensor]:
    """``logps/chosen``/``logps/rejected`` as batch means of log π(y)/|y| (TRL's CPO/SimPO
    and IPO log these under the names that hold sums for the other losses)."""
    return {"logps/chosen": (lp.policy_chosen.detach() / lc.clamp(min=1)).mean(),
            "logps/rejected": (lp.policy_rejected.detach() / lr.clamp(min=1)).mean()}


def simpo(lp: Logps, p: LossParams) -> LossTerms:
    """SimPO (Meng et al. 2024, Eq. 6): reference-free, length-normalised, with a margin.

    z = β (log π(y₊)/|y₊| − log π(y₋)/|y₋|) − γ_SimPO;  ℓ = softplus(−z), as TRL's CPO
    ``simpo``. Rewards: β log π(y)/|y|; ``logps/*``: per-token means log π(y)/|y| (TRL's CPO).
    """
    lc, lr = _need_len(lp, "simpo")
    c = p.beta * lp.policy_chosen / lc.clamp(min=1)
    r = p.beta * lp.policy_rejected / lr.clamp(min=1)
    return LossTerms(_nll_sigmoid(c - r - p.simpo_margin), c.detach(), r.detach(),
                     _per_token_logps(lp, lc, lr))


def rdpo(lp: Logps, p: LossParams) -> LossTerms:
    """R-DPO (Park et al. 2024, Eq. 9): DPO with a length-difference term.

    z = β (Δπ − Δπ₀) + α (|y₊| − |y₋|);  ℓ = softplus(−z). A longer chosen response needs a
    smaller log-ratio margin, so length alone is not rewarded. Rewards: β log π/π₀.
    """
    sc, sr = _ratios(lp, "rdpo")
    lc, lr = _need_len(lp, "rdpo")
    z = p.beta * (sc - sr) + p.rdpo_alpha * (lc - lr)
    return LossTerms(_nll_sigmoid(z), p.beta * sc.detach(), p.beta * sr.detach())


def hinge(lp: Logps, p: LossParams) -> LossTerms:
    """SLiC-HF hinge (Zhao et al. 2023): ℓ = max(0, 1 − β (Δπ − Δπ₀)), as TRL's ``hinge``."""
    sc, sr = _ratios(lp, "hinge")
    return LossTerms(F.relu(1 - p.beta * (sc - sr)), p.beta * sc.detach(), p.beta * sr.detach())


def robust(lp: Logps, p: LossParams) -> LossTerms:
    """Robust DPO (Chowdhury et al. 2024, Eq. 8): unbiased under label-flip rate ε.

    z = β (Δπ − Δπ₀);  ℓ = ((1−ε) softplus(−z) − ε softplus(z)) / (1 − 2ε), as TRL's
    ``robust``. ε = 0 is DPO.
    """
    sc, sr = _ratios(lp, "robust")
    z = p.beta * (sc - sr)
    eps = p.label_smoothing
    losses = ((1 - eps) * _nll_sigmoid(z) - eps * _nll_sigmoid(-z)) / (1 - 2 * eps)
    return LossTerms(losses, p.beta * sc.detach(), p.beta * sr.detach())


def _baseline_mean(v: Tensor) -> Tensor:
    return v.mean().expand_as(v)


def _baseline_loo(v: Tensor) -> Tensor:
    n = v.numel()
    return (v.sum() - v) / (n - 1) if n > 1 else torch.zeros_like(v)


BASELINES: dict[str, Callable[[Tensor], Tensor]] = {
    "loo": _baseline_loo,       # b_i = mean of the other pairs' ℓ: unbiased
    "none": torch.zeros_like,   # b = 0: unbiased
    "mean": _baseline_mean,     # b = batch mean, ℓ_i included: score term × (n−1)/n, biased
}


def pdpo(lp: Logps, p: LossParams) -> LossTerms:
    """The proper on-policy objective J_PDPO (note C) as a score-function surrogate.

    For pairs (y, y') *sampled from π_θ* and ordered by a preference oracle into (y₊, y₋):
    ℓ = softplus(−z), z = β Δπ − γ Δπ₀, and

        surrogate = ℓ + stopgrad(ℓ − b) · (log π(y₊) + log π(y₋)),

    whose expected gradient is ∇J = E[∇ℓ + ℓ ∇log π(y)π(y')] when the baseline b_i does not
    depend on pair i: ``loo`` (default; the mean ℓ of the *other* pairs of the batch) and
    ``none`` (b = 0) are unbiased. ``mean`` (the batch mean, ℓ_i included) is biased: its
    expected gradient is E[∇ℓ] + (n−1)/n · E[ℓ ∇log π(y)π(y')] for a batch of n i.i.d.
    pairs. The returned per-example value is the surrogate; ``extra["pdpo/objective"]`` is
    the mean ℓ itself (an unbiased estimate of J_PDPO: the pairs come from π). Rewards as
    :func:`dpo_bg` (TRL's β log π/π₀); z under ``pdpo/margins``, ``pdpo/accuracies``.
    """
    z, c, r = _bg_logits(lp, p, "pdpo")
    ell = _nll_sigmoid(z)
    adv = (ell - BASELINES[p.baseline](ell)).detach()
    surrogate = ell + adv * (lp.policy_chosen + lp.policy_rejected)
    return LossTerms(surrogate, c.detach(), r.detach(),
                     {"pdpo/objective": ell.detach().mean(), **_bg_extra("pdpo", z)})


def pdpo_offline(lp: Logps, p: LossParams) -> LossTerms:
    """J_PDPO estimated from reference data by self-normalised importance sampling (note C).

    w_i = π(y₊)π(y₋) / (π₀(y₊)π₀(y₋)) = exp(s₊ + s₋), s = log π − log π₀, normalised within
    the batch: w̃ = softmax(s₊ + s₋). Estimate Ĵ = Σ_i w̃_i ℓ_i (ℓ as in :func:`dpo_bg`); its
    gradient, through w̃ too, is Σ w̃_i [∇ℓ_i + (ℓ_i − Ĵ) ∇(s₊+s₋)_i]: the score-function
    term with a weighted-mean baseline built in. Per-example losses are ``B · w̃_i · ℓ_i`` so
    that their mean is Ĵ; ``pdpo/objective`` is Ĵ (not the unweighted mean ℓ, which
    estimates the expected loss under π₀). ``is/ess`` = (Σw̃)²/Σw̃² / B.
    """
    z, c, r = _bg_logits(lp, p, "pdpo_offline")
    sc, sr = _ratios(lp, "pdpo_offline")
    w = torch.softmax(sc + sr, dim=0)                                  # (B,)
    ell = _nll_sigmoid(z)                                              # (B,)
    ess = 1.0 / (w.detach() ** 2).sum() / w.numel()
    return LossTerms(w.numel() * w * ell, c.detach(), r.detach(),
                     {"is/ess": ess, "pdpo/objective": (w * ell).detach().sum(),
                      **_bg_extra("pdpo_offline", z)})


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: the function and what it needs / reads."""

    fn: Callable[[Logps, LossParams], LossTerms]
    needs_ref: bool = True
    onpolicy: bool = False                 # pairs must be sampled from π (on-policy trainer)
    reads_label_smoothing: bool = False    # LossParams.label_smoothing (ε) matters


LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec(dpo, reads_label_smoothing=True),
    "dpo_bg": LossSpec(dpo_bg),
    "ipo": LossSpec(ipo),
    "simpo": LossSpec(simpo, needs_ref=False),
    "rdpo": LossSpec(rdpo),
    "hinge": LossSpec(hinge),
    "robust": LossSpec(robust, reads_label_smoothing=True),
    "pdpo": LossSpec(pdpo, onpolicy=True),
    "pdpo_offline": LossSpec(pdpo_offline),
}


def get_loss(name: str) -> LossSpec:
    """The registered loss ``name``; an unknown name is an InputError listing the choices."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}",
                         where="loss")
    return LOSSES[name]


def needs_reference(name: str, params: LossParams) -> bool:
    """Whether ``name`` with ``params`` reads reference log-probs (γ = 0 bg losses don't)."""
    spec = get_loss(name)
    if name in ("dpo_bg", "pdpo") and params.gamma_ == 0:
        return False
    return spec.needs_ref


_WARNED: set[str] = set()       # losses already warned about an ignored ε (once per process)


def warn_ignored_params(name: str, params: LossParams) -> None:
    """``warnings.warn`` (once per loss and process) when ε > 0 is given to a loss that does
    not read it (every loss but ``dpo`` and ``robust``)."""
    if params.label_smoothing == 0 or get_loss(name).reads_label_smoothing or name in _WARNED:
        return
    _WARNED.add(name)
    readers = ", ".join(n for n, s in LOSSES.items() if s.reads_label_smoothing)
    warnings.warn(f"label_smoothing={params.label_smoothing:g} has no effect on loss {name!r} "
                  f"(only {readers} read it)", UserWarning, stacklevel=3)


def _sft_tokens(chosen: Tensor, length: Tensor) -> Tensor:
    # (B,): B·(−log π(y₊ᵢ))/Σ_j |y₊ⱼ|; the batch mean is −Σ log π / Σ |y₊|
    return -chosen.numel() * chosen / length.sum().clamp(min=1)


SFT_AVERAGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tokens": _sft_tokens,                                         # TRL sft / rpo_alpha, CPO
    "sequences": lambda chosen, length: -chosen / length.clamp(min=1),
}


def preference_loss(name: str, lp: Logps, params: LossParams | None = None
                    ) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-example losses ``(B,)`` of loss ``name`` (+ SFT term) and the batch metrics.

    ``lp``: a :class:`Logps` of ``(B,)`` tensors (policy log-probs, and the reference's and
    the response lengths where the loss reads them); ``params``: :class:`LossParams`
    (default: its defaults). Example::

        losses, metrics = preference_loss("dpo", Logps(pc, pr, rc, rr), LossParams(beta=0.1))

    SFT term (``sft_weight`` w > 0), by ``sft_average``: ``tokens`` (default) makes the
    batch's term w · (−Σ_i log π(y₊ᵢ)) / Σ_i |y₊ᵢ|, one mean of the NLL over every chosen
    token in the batch — TRL's ``sft`` loss type (formerly ``rpo_alpha``) and CPO's
    ``cpo_alpha`` NLL, computed from the sequence sums and token counts; example i carries
    w · B · (−log π(y₊ᵢ)) / Σ_j |y₊ⱼ|, so the per-example losses still average to the batch
    loss. ``sequences``: w · (−log π(y₊ᵢ)/|y₊ᵢ|) per example, the mean of per-sequence means
    (weights short responses' tokens more). Metrics (detached batch means, TRL names):
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``,
    ``logps/chosen``, ``logps/rejected`` (sums, or per-token means where TRL logs those:
    ``simpo``, ``ipo`` with ``ipo_logratio=mean``), ``lengths/chosen``,
    ``lengths/rejected`` (when lengths are given), ``loss/<name>`` (before the SFT term),
    ``loss/sft`` (the averaged NLL, when on), and the loss's own extras.
    """
    spec = get_loss(name)
    params = params if params is not None else LossParams()
    warn_ignored_params(name, params)
    terms = spec.fn(lp, params)
    losses = terms.losses
    metrics: dict[str, Tensor] = {
        f"loss/{name}": terms.losses.detach().mean(),
        "rewards/chosen": terms.chosen_rewards.mean(),
        "rewards/rejected": terms.rejected_rewards.mean(),
        "rewards/margins": (terms.chosen_rewards - terms.rejected_rewards).mean(),
        "rewards/accuracies": (terms.chosen_rewards > terms.rejected_rewards).float().mean(),
        "logps/chosen": lp.policy_chosen.detach().mean(),
        "logps/rejected": lp.policy_rejected.detach().mean(),
    }
    if lp.chosen_len is not None and lp.rejected_len is not None:
        metrics["lengths/chosen"] = lp.chosen_len.float().mean()
        metrics["lengths/rejected"] = lp.rejected_len.float().mean()
    if params.sft_weight > 0:
        lc, _ = _need_len(lp, "sft")
        nll = SFT_AVERAGES[params.sft_average](lp.policy_chosen, lc)            # (B,)
        losses = losses + params.sft_weight * nll
        metrics["loss/sft"] = nll.detach().mean()
    metrics.update({k: v.detach() if torch.is_tensor(v) else torch.tensor(v)
                    for k, v in terms.extra.items()})
    return losses, metrics
