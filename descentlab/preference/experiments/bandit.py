"""Bandit lab: where does the probability mass go? Exact, tabular preference optimisation.

Setup (issue 5, SPEC C–D). ``P`` prompts, each with ``K`` candidate responses; a true reward
``r (P, K)``; a reference π₀(·|x) = softmax(b₀(x)) with random logits ``b₀ (P, K)``. The
offline data are ``pairs_per_prompt`` pairs per prompt drawn y, y' ∼ π₀ (y ≠ y') and labelled
by Bradley–Terry, P(y ≻ y') = σ((r(y) − r(y'))/τ); with K larger than the pairs drawn, some
responses are never sampled. The policy is a softmax over responses:

* ``tabular``: logits b₀ + θ, θ ``(P, K)`` (one free logit per response), θ₀ = 0;
* ``linear``:  logits b₀ + Φ w, features Φ ``(P, K, d)``, w ``(d,)`` shared by every prompt
  (responses that look alike move together: mass can reach responses never sampled). The
  true reward is ``ρ``-correlated with a fixed direction of Φ.

Both start at π = π₀. Every loss is the registry's (:func:`preference_loss`); offline losses
use the whole data set as one batch (exact, deterministic gradient). ``pdpo`` samples
``onpolicy_pairs`` pairs per prompt from π every step and labels them with the true reward
(the score-function surrogate); ``pdpo_exact`` minimises J_PDPO itself:

    J_PDPO = E_x Σ_{a,b} π(a)π(b) [p_ab ℓ(a, b) + p_ba ℓ(b, a)] = E_x 2 Σ_{a,b} π(a)π(b) p_ab ℓ(a, b)

with ℓ(y₊, y₋) the ``dpo_bg`` loss and p_ab = σ((r_a − r_b)/τ), differentiated exactly.

Tracked every ``log_every`` steps (exact functions of π, :func:`policy_metrics`): π(y₊) and
π(y₋) averaged over the data pairs, mass on never-sampled responses, expected true reward,
KL(π‖π₀), entropy, mass on the best response, and J_PDPO.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from descentlab.core.config import check_config, option
from descentlab.core.errors import InputError
from descentlab.core.progress import progress
from descentlab.preference.experiments.variants import Variant, aggregate, build_variants, mean_std
from descentlab.preference.losses import BASELINES, Logps, LossParams, preference_loss


@dataclass
class Config:
    """The bandit lab: problem size, data, policy, losses and optimisation."""

    policy: str = option("tabular", "policy parametrisation: one logit per response, or "
                         "log-linear in shared features", choices=lambda: PARAMETRISATIONS)
    prompts: int = option(64, "number of prompts x", min=1)
    responses: int = option(16, "candidate responses K per prompt", min=2)
    pairs_per_prompt: int = option(8, "offline pairs drawn from π₀ per prompt", min=1)
    ref_scale: float = option(1.5, "std of the reference logits b₀ (larger = peakier π₀)")
    ref_reward_corr: float = option(0.0, "correlation of the reference logits with the reward",
                                    min=-1, max=1)
    reward_scale: float = option(1.0, "std of the true reward", gt=0)
    bt_temperature: float = option(1.0, "Bradley–Terry temperature τ of the labels", gt=0)
    feature_dim: int = option(8, "feature dimension d of the linear policy", min=1)
    reward_feature_corr: float = option(0.8, "correlation ρ of the reward with the features",
                                        min=-1, max=1)
    beta: float = option(0.5, "β of every loss (SimPO: see --simpo-beta)", gt=0)
    gamma_ratios: tuple[float, ...] = option((0.0, 0.5, 1.0, 2.0), "γ/β values of dpo_bg",
                                             min=0)
    simpo_beta: float = option(0.5, "β of SimPO (responses have length 1 here)", gt=0)
    simpo_margin: float = option(0.5, "SimPO margin")
    baseline: str = option("loo", "pdpo score-function baseline (see prefopt train --help; "
                           "mean is biased)", choices=BASELINES)
    losses: tuple[str, ...] = option(
        ("dpo", "dpo_bg", "ipo", "simpo", "pdpo", "pdpo_offline", "pdpo_exact"),
        "loss settings to compare (dpo_bg expands to every γ/β)")
    steps: int = option(600, "optimiser steps per loss", min=1)
    lr: float = option(0.05, "learning rate", gt=0)
    optimizer: str = option("adam", "optimiser", choices=("adam", "sgd"))
    onpolicy_pairs: int = option(8, "pairs per prompt sampled from π per pdpo step", min=1)
    seeds: int = option(5, "independent problems (seed, seed+1, ...): data, rewards, π₀", min=1)
    log_every: int = option(10, "steps between recorded metrics", min=1)

    def __post_init__(self) -> None:
        check_config(self)

    def variants(self) -> dict[str, Variant]:
        return build_variants(self.losses, beta=self.beta, gamma_ratios=self.gamma_ratios,
                              simpo_beta=self.simpo_beta, simpo_margin=self.simpo_margin,
                              baseline=self.baseline)


OUTPUTS = ("bandit_tabular_curves.png", "bandit_linear_curves.png")  # earlier runs' figures

# --quick: the same lab, smaller and shorter (seconds)
QUICK: dict = {"prompts": 16, "responses": 8, "pairs_per_prompt": 4, "steps": 150,
               "seeds": 2, "log_every": 10}


class Problem(NamedTuple):
    """One bandit instance. ``ref_logp``/``reward``: ``(P, K)``; ``features``: ``(P, K, d)``;
    data pairs ``prompt``/``chosen``/``rejected``: ``(N,)`` long; ``seen``: ``(P, K)`` bool,
    True where a response occurs in some data pair of its prompt."""

    ref_logp: Tensor
    reward: Tensor
    features: Tensor
    prompt: Tensor
    chosen: Tensor
    rejected: Tensor
    seen: Tensor


def make_problem(cfg: Config, seed: int, device: torch.device | str = "cpu") -> Problem:
    """Draw rewards, π₀, features and the Bradley–Terry-labelled offline pairs (float64)."""
    g = torch.Generator().manual_seed(seed)
    P, K, d = cfg.prompts, cfg.responses, cfg.feature_dim
    feats = torch.randn(P, K, d, generator=g, dtype=torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    rho = cfg.reward_feature_corr
    signal = feats @ (u / u.norm())                                       # (P, K), N(0, 1)
    reward = cfg.reward_scale * (rho * signal + math.sqrt(1 - rho ** 2)
                                 * torch.randn(P, K, generator=g, dtype=torch.float64))
    c = cfg.ref_reward_corr
    z = reward / cfg.reward_scale
    b0 = cfg.ref_scale * (c * z + math.sqrt(1 - c ** 2)
                          * torch.randn(P, K, generator=g, dtype=torch.float64))
    ref_logp = torch.log_softmax(b0, -1)
    pi0 = ref_logp.exp()
    joint = (pi0[:, :, None] * pi0[:, None, :]).reshape(P, K * K)         # (P, K·K) ordered pairs
    joint[:, torch.arange(K) * (K + 1)] = 0                               # y ≠ y'
    flat = torch.multinomial(joint, cfg.pairs_per_prompt, replacement=True, generator=g)
    a, b = flat // K, flat % K                                            # (P, m) each
    win = torch.rand(a.shape, generator=g, dtype=torch.float64) < torch.sigmoid(
        (reward.gather(1, a) - reward.gather(1, b)) / cfg.bt_temperature)
    chosen, rejected = torch.where(win, a, b), torch.where(win, b, a)
    prompt = torch.arange(P)[:, None].expand_as(a)
    seen = torch.zeros(P, K, dtype=torch.bool)
    seen[prompt.reshape(-1), a.reshape(-1)] = True
    seen[prompt.reshape(-1), b.reshape(-1)] = True
    dev = torch.device(device)
    return Problem(ref_logp.to(dev), reward.to(dev), feats.to(dev), prompt.reshape(-1).to(dev),
                   chosen.reshape(-1).to(dev), rejected.reshape(-1).to(dev), seen.to(dev))


class SoftmaxPolicy(torch.nn.Module):
    """log π ``(P, K)`` = log_softmax(b₀ + θ) (tabular) or log_softmax(b₀ + Φ w) (linear)."""

    def __init__(self, problem: Problem, kind: str):
        super().__init__()
        if kind not in PARAMETRISATIONS:
            raise InputError(f"unknown policy {kind!r}; choose from {', '.join(PARAMETRISATIONS)}",
                             where="policy")
        self.kind = kind
        self.register_buffer("ref_logp", problem.ref_logp)
        self.register_buffer("features", problem.features)
        shape = problem.ref_logp.shape if kind == "tabular" else problem.features.shape[-1:]
        self.theta = torch.nn.Parameter(torch.zeros(shape, dtype=problem.ref_logp.dtype,
                                                    device=problem.ref_logp.device))

    def forward(self) -> Tensor:
        return torch.log_softmax(self.ref_logp + PARAMETRISATIONS[self.kind](self), -1)


PARAMETRISATIONS: dict[str, Callable[[SoftmaxPolicy], Tensor]] = {
    "tabular": lambda m: m.theta,                                         # (P, K)
    "linear": lambda m: m.features @ m.theta,                             # (P, K, d)·(d,) -> (P, K)
}


def pair_logps(logp: Tensor, problem: Problem, prompt: Tensor, chosen: Tensor,
               rejected: Tensor) -> Logps:
    """:class:`Logps` ``(N,)`` of pairs indexed into ``logp (P, K)``; every length is 1."""
    ones = torch.ones_like(chosen)
    return Logps(logp[prompt, chosen], logp[prompt, rejected],
                 problem.ref_logp[prompt, chosen], problem.ref_logp[prompt, rejected], ones, ones)


def exact_pair_objective(logp: Tensor, problem: Problem, loss: str, params: LossParams,
                         bt_temperature: float) -> Tensor:
    """J = mean_x 2 Σ_{a,b} π(a)π(b) σ((r_a − r_b)/τ) ℓ(a, b): the expected loss of a pair
    sampled from π and labelled by Bradley–Terry, every ordered pair enumerated (a = b
    included). ``logp (P, K)``; differentiable through π and through ℓ."""
    P, K = logp.shape
    pi = logp.exp()
    a = torch.arange(K, device=logp.device)[:, None].expand(K, K).reshape(-1)   # (K·K,)
    b = torch.arange(K, device=logp.device)[None, :].expand(K, K).reshape(-1)
    ones = torch.ones(P * K * K, dtype=logp.dtype, device=logp.device)
    lp = Logps(logp[:, a].reshape(-1), logp[:, b].reshape(-1),
               problem.ref_logp[:, a].reshape(-1), problem.ref_logp[:, b].reshape(-1), ones, ones)
    ell = preference_loss(loss, lp, params)[0].reshape(P, K, K)            # ℓ(a, b)
    p_ab = torch.sigmoid((problem.reward[:, :, None] - problem.reward[:, None, :]) / bt_temperature)
    w = 2 * pi[:, :, None] * pi[:, None, :] * p_ab                         # (P, K, K)
    return (w * ell).sum((1, 2)).mean()


def policy_metrics(logp: Tensor, problem: Problem, beta: float, bt_temperature: float) -> dict:
    """Exact metrics of a policy ``logp (P, K)`` (means over prompts / data pairs):

    ``expected_reward`` E_x Σ π r; ``kl`` E_x KL(π‖π₀); ``entropy`` E_x H(π);
    ``offdata_mass`` E_x Σ_{y never sampled} π(y); ``best_mass`` E_x π(argmax r);
    ``pi_chosen``/``pi_rejected`` mean π(y±) over the data pairs; ``logp_chosen``/
    ``logp_rejected`` mean log π(y±); ``j_pdpo`` J_PDPO with standard DPO's ℓ (γ = β).
    """
    with torch.no_grad():
        pi = logp.exp()
        lp = pair_logps(logp, problem, problem.prompt, problem.chosen, problem.rejected)
        best = problem.reward.argmax(-1, keepdim=True)
        return {
            "expected_reward": (pi * problem.reward).sum(-1).mean().item(),
            "kl": (pi * (logp - problem.ref_logp)).sum(-1).mean().item(),
            "entropy": -(pi * logp).sum(-1).mean().item(),
            "offdata_mass": (pi * (~problem.seen)).sum(-1).mean().item(),
            "best_mass": pi.gather(1, best).mean().item(),
            "pi_chosen": lp.policy_chosen.exp().mean().item(),
            "pi_rejected": lp.policy_rejected.exp().mean().item(),
            "logp_chosen": lp.policy_chosen.mean().item(),
            "logp_rejected": lp.policy_rejected.mean().item(),
            "j_pdpo": exact_pair_objective(logp, problem, "dpo", LossParams(beta=beta),
                                           bt_temperature).item(),
        }


# ---- objectives by training mode: (logp, problem, variant, cfg, generator) -> scalar ------

def _offline(logp: Tensor, pb: Problem, v: Variant, cfg: Config, g: torch.Generator) -> Tensor:
    lp = pair_logps(logp, pb, pb.prompt, pb.chosen, pb.rejected)
    return preference_loss(v.loss, lp, v.params)[0].mean()


def _onpolicy(logp: Tensor, pb: Problem, v: Variant, cfg: Config, g: torch.Generator) -> Tensor:
    P, m = logp.shape[0], cfg.onpolicy_pairs
    pi = logp.detach().exp().cpu()
    ab = torch.multinomial(pi, 2 * m, replacement=True, generator=g).to(logp.device)  # (P, 2m)
    a, b = ab[:, :m], ab[:, m:]
    r = pb.reward
    p_win = torch.sigmoid((r.gather(1, a) - r.gather(1, b)) / cfg.bt_temperature)
    win = torch.rand(a.shape, generator=g, dtype=torch.float64).to(logp.device) < p_win
    chosen, rejected = torch.where(win, a, b), torch.where(win, b, a)
    prompt = torch.arange(P, device=logp.device)[:, None].expand_as(a)
    lp = pair_logps(logp, pb, prompt.reshape(-1), chosen.reshape(-1), rejected.reshape(-1))
    return preference_loss(v.loss, lp, v.params)[0].mean()


def _exact(logp: Tensor, pb: Problem, v: Variant, cfg: Config, g: torch.Generator) -> Tensor:
    return exact_pair_objective(logp, pb, v.loss, v.params, cfg.bt_temperature)


OBJECTIVES: dict[str, Callable[..., Tensor]] = {
    "offline": _offline, "onpolicy": _onpolicy, "exact": _exact,
}
OPTIMIZERS: dict[str, Callable] = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def train_variant(problem: Problem, variant: Variant, cfg: Config, seed: int) -> list[dict]:
    """Optimise one loss setting from π = π₀; the metric records at steps 0, log_every, …,
    steps (each with ``step`` and ``loss``, the objective at that step)."""
    policy = SoftmaxPolicy(problem, cfg.policy)
    opt = OPTIMIZERS[cfg.optimizer](policy.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    objective = OBJECTIVES[variant.mode]
    history = []
    for step in range(cfg.steps + 1):
        logp = policy()
        loss = objective(logp, problem, variant, cfg, g)
        if step % cfg.log_every == 0 or step == cfg.steps:
            history.append({"step": step, "loss": loss.item(),
                            **policy_metrics(logp, problem, cfg.beta, cfg.bt_temperature)})
        if step == cfg.steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return history


def reference_policies(problem: Problem, beta: float) -> dict[str, Tensor]:
    """log π ``(P, K)`` of π₀ and of the KL-regularised optimum π* ∝ π₀ exp(r/β)."""
    return {"pi0": problem.ref_logp,
            "rlhf_optimum": torch.log_softmax(problem.ref_logp + problem.reward / beta, -1)}


# the terminal table's columns
TABLE_FIELDS = ("final_expected_reward", "offdata_mass", "chosen_logp_delta",
                "rejected_logp_delta", "kl", "entropy")
FINAL_FIELDS = ("final_expected_reward", "offdata_mass", "chosen_logp_delta",
                "rejected_logp_delta", "kl", "entropy", "pi_chosen", "pi_rejected", "best_mass",
                "j_pdpo")


def _finals(history: list[dict]) -> dict[str, float]:
    first, last = history[0], history[-1]
    return {"final_expected_reward": last["expected_reward"], "offdata_mass": last["offdata_mass"],
            "chosen_logp_delta": last["logp_chosen"] - first["logp_chosen"],
            "rejected_logp_delta": last["logp_rejected"] - first["logp_rejected"],
            **{k: last[k] for k in ("kl", "entropy", "pi_chosen", "pi_rejected", "best_mass",
                                    "j_pdpo")}}


def run(cfg: Config, out_dir: str | os.PathLike, seed: int = 0,
        device: torch.device | str = "cpu") -> dict:
    """Every loss setting on ``cfg.seeds`` problems; figures in ``out_dir``.

    Returns ``{"experiment": "bandit", "config", "seeds", "steps", "reference",
    "losses": {NAME: {FIELD: mean, FIELD_std: std, "per_seed": [...],
    "curves": {metric: {"mean": [...], "std": [...]}}}}, "figures"}``.
    """
    from descentlab.preference.experiments.viz import plot_bandit

    variants = cfg.variants()
    seeds = list(range(seed, seed + cfg.seeds))
    runs: dict[str, list[list[dict]]] = {name: [] for name in variants}
    refs: dict[str, list[dict]] = {"pi0": [], "rlhf_optimum": []}
    jobs = [(s, name) for s in seeds for name in variants]
    problems = {s: make_problem(cfg, s, device) for s in seeds}
    for s, name in progress(jobs, total=len(jobs), desc=f"bandit ({cfg.policy})"):
        runs[name].append(train_variant(problems[s], variants[name], cfg, seed=s))
    for s in seeds:
        for k, lp in reference_policies(problems[s], cfg.beta).items():
            refs[k].append(policy_metrics(lp, problems[s], cfg.beta, cfg.bt_temperature))
    losses: dict[str, dict] = {}
    for name, hists in runs.items():
        v = variants[name]
        losses[name] = {"loss": v.loss, "mode": v.mode, "params": asdict(v.params),
                        **aggregate([_finals(h) for h in hists], hists, FINAL_FIELDS)}
    reference = {k: {m: mean_std([r[m] for r in v])[0] for m in v[0]} for k, v in refs.items()}
    reference["best_response_reward"] = mean_std(
        [problems[s].reward.max(-1).values.mean().item() for s in seeds])[0]
    result = {"experiment": "bandit", "config": asdict(cfg), "seeds": seeds,
              "steps": [r["step"] for r in runs[next(iter(runs))][0]],
              "reference": reference, "losses": losses}
    result["figures"] = [str(p) for p in plot_bandit(result, Path(out_dir))]
    return result
