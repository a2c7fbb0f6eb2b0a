"""Preference losses against closed forms and analytic gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from descentlab.core.errors import InputError
from descentlab.preference.losses import LOSSES, Logps, LossParams, get_loss, preference_loss

T = torch.tensor


def lp(pc, pr, rc=None, rr=None, lc=None, lr=None, grad=False) -> Logps:
    pc, pr = T(pc, dtype=torch.float64), T(pr, dtype=torch.float64)
    if grad:
        pc.requires_grad_(True)
        pr.requires_grad_(True)
    def opt(x):
        return None if x is None else T(x, dtype=torch.float64)
    return Logps(pc, pr, opt(rc), opt(rr), opt(lc), opt(lr))


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_dpo_closed_form():
    # z = β((pc - rc) - (pr - rr)) = 0.5 * ((-3 + 4) - (-5 + 4)) = 1.0
    losses, m = preference_loss("dpo", lp([-3.0], [-5.0], [-4.0], [-4.0]), LossParams(beta=0.5))
    assert losses.item() == pytest.approx(sp(-1.0), abs=1e-12)
    assert m["rewards/chosen"].item() == pytest.approx(0.5)
    assert m["rewards/rejected"].item() == pytest.approx(-0.5)
    assert m["rewards/margins"].item() == pytest.approx(1.0)
    assert m["rewards/accuracies"].item() == 1.0
    assert m["logps/chosen"].item() == -3.0 and m["logps/rejected"].item() == -5.0


def test_dpo_bg_with_gamma_equal_beta_is_dpo():
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(16, generator=g, dtype=torch.float64) * 5 for _ in range(4)]
    a = Logps(*x)
    for beta in (0.05, 0.3, 2.0):
        l1, _ = preference_loss("dpo", a, LossParams(beta=beta))
        l2, _ = preference_loss("dpo_bg", a, LossParams(beta=beta, gamma=beta))
        assert torch.allclose(l1, l2, atol=1e-12)


def test_dpo_bg_closed_form_and_gradient():
    beta, gamma = 0.4, 1.5
    pc, pr, rc, rr = -2.0, -6.0, -3.0, -1.0
    a = lp([pc], [pr], [rc], [rr], grad=True)
    z = beta * (pc - pr) - gamma * (rc - rr)          # 1.6 + 3.0 = 4.6
    losses, m = preference_loss("dpo_bg", a, LossParams(beta=beta, gamma=gamma))
    assert losses.item() == pytest.approx(sp(-z), abs=1e-12)
    assert m["dpo_bg/margins"].item() == pytest.approx(z)     # the loss's own margin
    # TRL's rewards/margins: β(log π/π₀(y₊) − log π/π₀(y₋)) = 0.4 · (1 + 5)
    assert m["rewards/margins"].item() == pytest.approx(beta * ((pc - rc) - (pr - rr)))
    losses.sum().backward()
    s = 1 / (1 + math.exp(z))                          # σ(−z)
    assert a.policy_chosen.grad.item() == pytest.approx(-beta * s, abs=1e-12)
    assert a.policy_rejected.grad.item() == pytest.approx(beta * s, abs=1e-12)


def test_dpo_bg_gamma_zero_needs_no_reference():
    losses, _ = preference_loss("dpo_bg", lp([-1.0], [-2.0]), LossParams(beta=1.0, gamma=0.0))
    assert losses.item() == pytest.approx(sp(-1.0))


def test_ipo_simpo_rdpo_hinge_closed_forms():
    a = lp([-3.0], [-5.0], [-4.0], [-4.0], [2.0], [5.0])
    # IPO with sequence sums: (Δ - 1/(2β))² with Δ = 2, β = 0.5 -> (2 - 1)² = 1
    assert preference_loss("ipo", a, LossParams(beta=0.5, ipo_logratio="sum"))[0].item() \
        == pytest.approx(1.0)
    # SimPO: z = β(-3/2 - -5/5) - m = 2(-0.5) - 0.5 = -1.5
    assert preference_loss("simpo", a, LossParams(beta=2.0, simpo_margin=0.5))[0].item() \
        == pytest.approx(sp(1.5))
    # R-DPO: z = β·2 + α(2 - 5) = 0.2 - 0.3 = -0.1
    assert preference_loss("rdpo", a, LossParams(beta=0.1, rdpo_alpha=0.1))[0].item() \
        == pytest.approx(sp(0.1))
    # hinge: max(0, 1 - βΔ) = 1 - 0.2
    assert preference_loss("hinge", a, LossParams(beta=0.1))[0].item() == pytest.approx(0.8)
    assert preference_loss("hinge", a, LossParams(beta=1.0))[0].item() == 0.0


def test_robust_and_label_smoothing():
    a = lp([-3.0], [-5.0], [-4.0], [-4.0])
    z, eps = 0.5 * 2.0, 0.2
    r = preference_loss("robust", a, LossParams(beta=0.5, label_smoothing=eps))[0].item()
    assert r == pytest.approx(((1 - eps) * sp(-z) - eps * sp(z)) / (1 - 2 * eps))
    c = preference_loss("dpo", a, LossParams(beta=0.5, label_smoothing=eps))[0].item()
    assert c == pytest.approx((1 - eps) * sp(-z) + eps * sp(z))
    assert preference_loss("robust", a, LossParams(beta=0.5))[0].item() == pytest.approx(sp(-z))


def test_sft_weight_adds_per_token_nll():
    a = lp([-6.0], [-5.0], [-4.0], [-4.0], [3.0], [5.0])
    base = preference_loss("dpo", a, LossParams(beta=0.1))[0].item()
    with_sft, m = preference_loss("dpo", a, LossParams(beta=0.1, sft_weight=0.5))
    assert with_sft.item() == pytest.approx(base + 0.5 * 2.0)
    assert m["loss/sft"].item() == pytest.approx(2.0)


def test_sft_term_is_one_mean_over_every_chosen_token_by_default():
    """TRL's sft loss / rpo_alpha / CPO's cpo_alpha: −Σ log π(y₊) / Σ |y₊| over the batch.
    Mixed lengths (3 and 1 tokens, log π −6 and −1): token mean 7/4, mean of per-sequence
    means (2 + 1)/2 = 3/2."""
    w = 0.5

    def run(**kw):
        a = lp([-6.0, -1.0], [-5.0, -3.0], [-4.0, -2.0], [-4.0, -3.0], [3.0, 1.0], [5.0, 2.0],
               grad=True)
        losses, m = preference_loss("dpo", a, LossParams(beta=0.1, **kw))
        losses.mean().backward()
        return losses.mean().item(), m, a.policy_chosen.grad, a.policy_rejected.grad

    base, _, g0, r0 = run()
    tok, m, g, r = run(sft_weight=w)
    assert tok == pytest.approx(base + w * 7 / 4, abs=1e-12)
    assert m["loss/sft"].item() == pytest.approx(7 / 4, abs=1e-12)
    # ∂/∂log π(y₊ᵢ) of the SFT part: −w / Σ|y₊| = −0.125 for every example
    torch.testing.assert_close(g - g0, torch.full((2,), -w / 4, dtype=torch.float64))
    torch.testing.assert_close(r, r0)
    seq, m, g, _ = run(sft_weight=w, sft_average="sequences")
    assert seq == pytest.approx(base + w * 3 / 2, abs=1e-12)
    assert m["loss/sft"].item() == pytest.approx(3 / 2, abs=1e-12)
    torch.testing.assert_close(g - g0, T([-w / 6, -w / 2], dtype=torch.float64))


def test_pdpo_surrogate_gradient_is_score_function():
    beta = 0.5
    a = lp([-2.0, -4.0, -1.0], [-3.0, -1.0, -5.0], [-2.5, -3.0, -2.0], [-2.0, -2.0, -2.0],
           grad=True)
    surrogate, m = preference_loss("pdpo", a, LossParams(beta=beta, baseline="mean"))
    surrogate.mean().backward()
    z = beta * ((a.policy_chosen - a.ref_chosen) - (a.policy_rejected - a.ref_rejected))
    ell = F.softplus(-z).detach()
    s = torch.sigmoid(-z).detach()
    adv = ell - ell.mean()
    n = 3
    # ∂/∂log π(y₊) of mean_i [ℓ_i + (ℓ_i − b)(log π(y₊)_i + log π(y₋)_i)]
    assert torch.allclose(a.policy_chosen.grad, (-beta * s + adv) / n, atol=1e-12)
    assert torch.allclose(a.policy_rejected.grad, (beta * s + adv) / n, atol=1e-12)
    assert m["pdpo/objective"].item() == pytest.approx(ell.mean().item())
    # the surrogate's value is ℓ + (ℓ − b)(log π(y₊) + log π(y₋))
    extra = surrogate.detach() - ell
    assert torch.allclose(extra, adv * (a.policy_chosen + a.policy_rejected).detach())


def test_pdpo_leave_one_out_baseline():
    a = lp([-1.0, -2.0, -3.0], [-2.0, -2.0, -2.0], [-1.0] * 3, [-1.0] * 3)
    s, _ = preference_loss("pdpo", a, LossParams(beta=1.0, baseline="loo"))
    ell = F.softplus(-(T([-1.0, -2.0, -3.0]) + 2.0))
    b = (ell.sum() - ell) / 2
    expected = ell + (ell - b) * (T([-1.0, -2.0, -3.0]) - 2.0)
    assert torch.allclose(s.float(), expected.float(), atol=1e-6)


def test_pdpo_offline_weights():
    # equal ratios -> uniform weights -> per-example losses are ℓ itself, ESS = 1
    a = lp([-2.0, -3.0], [-3.0, -1.0], [-2.0, -3.0], [-3.0, -1.0])
    losses, m = preference_loss("pdpo_offline", a, LossParams(beta=1.0))
    assert torch.allclose(losses, torch.full((2,), math.log(2.0), dtype=torch.float64))
    assert m["is/ess"].item() == pytest.approx(1.0)
    # one pair with s₊ + s₋ = log 3 higher -> weights (3/4, 1/4)
    b = lp([-2.0 + math.log(3.0), -3.0], [-3.0, -1.0], [-2.0, -3.0], [-3.0, -1.0])
    losses, m = preference_loss("pdpo_offline", b, LossParams(beta=1.0, gamma=1.0))
    z0 = math.log(3.0)
    assert losses[0].item() == pytest.approx(2 * 0.75 * sp(-z0))
    assert losses[1].item() == pytest.approx(2 * 0.25 * math.log(2.0))
    assert m["is/ess"].item() == pytest.approx(1 / (0.75 ** 2 + 0.25 ** 2) / 2)


def test_registry_and_errors():
    assert set(LOSSES) >= {"dpo", "dpo_bg", "ipo", "simpo", "rdpo", "hinge", "robust", "pdpo",
                           "pdpo_offline"}
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("nope")
    with pytest.raises(InputError):
        LossParams(beta=0)
    with pytest.raises(InputError):
        LossParams(label_smoothing=0.5)
    with pytest.raises(ValueError, match="reference"):
        preference_loss("dpo", lp([-1.0], [-2.0]), LossParams())


# ---- issue 11: estimator correctness and TRL conventions ---------------------------------

def _enumerated_pdpo(params: dict[str, LossParams], n: int):
    """Exact expectations on a 3-response categorical policy: over every batch of ``n`` pairs
    (y, y') ∼ π×π drawn with replacement and labelled by Bradley–Terry, the expected gradient
    of the batch-mean pdpo surrogate for each of ``params``, and of the batch-mean ℓ (the
    pathwise part E[∇ℓ]); and ∇J_PDPO itself from J = Σ_{a,b} π(a)π(b)[p_ab ℓ(a,b) +
    p_ba ℓ(b,a)]. Gradients w.r.t. the logits θ, float64."""
    import itertools

    g = torch.Generator().manual_seed(3)
    K, tau = 3, 0.7
    theta = torch.randn(K, generator=g, dtype=torch.float64).requires_grad_(True)
    ref = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    reward = torch.randn(K, generator=g, dtype=torch.float64)
    logp = torch.log_softmax(theta, -1)
    pi = logp.detach().exp()
    p_win = torch.sigmoid((reward[:, None] - reward[None, :]) / tau)        # (K, K)
    # one pair's outcome (chosen, rejected) and its probability (held fixed: no gradient);
    # (c, r) arises from (y, y') = (c, r) or (r, c) with c winning, (c, c) from y = y' = c
    outcomes = [((c, r), pi[c] * pi[r] * (2 * p_win[c, r] if c != r else 1.0))
                for c in range(K) for r in range(K)]
    one = next(iter(params.values()))
    expect = {k: torch.zeros((), dtype=torch.float64) for k in [*params, "path"]}
    for batch in itertools.product(outcomes, repeat=n):
        prob = torch.stack([torch.as_tensor(q) for _, q in batch]).prod()
        c = torch.tensor([oc[0] for oc, _ in batch])
        r = torch.tensor([oc[1] for oc, _ in batch])
        pairs = Logps(logp[c], logp[r], ref[c], ref[r])
        for k, prm in params.items():
            expect[k] = expect[k] + prob * preference_loss("pdpo", pairs, prm)[0].mean()
        expect["path"] = expect["path"] + prob * preference_loss("dpo_bg", pairs, one)[0].mean()
    a, b = torch.meshgrid(torch.arange(K), torch.arange(K), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    ell = preference_loss("dpo_bg", Logps(logp[a], logp[b], ref[a], ref[b]), one)[0]
    pi_g = logp.exp()
    expect["exact"] = 2 * (pi_g[a] * pi_g[b] * p_win[a, b] * ell).sum()   # ℓ(a,b) when a ≻ b
    return {k: torch.autograd.grad(v, theta, retain_graph=True)[0] for k, v in expect.items()}


@pytest.mark.parametrize("n", [2, 3])
def test_pdpo_default_baseline_is_unbiased_by_exact_enumeration(n):
    """Every batch of n pairs enumerated: E[∇ surrogate] = ∇J_PDPO to 1e-10 with the default
    (leave-one-out) and with no baseline; the batch mean (ℓ_i included) shrinks the score
    term E[ℓ ∇log π(y)π(y')] = ∇J − E[∇ℓ] by exactly (n−1)/n."""
    kw = {"beta": 0.7, "gamma": 0.3}
    assert LossParams().baseline == "loo"
    g = _enumerated_pdpo({"default": LossParams(**kw), "none": LossParams(**kw, baseline="none"),
                          "mean": LossParams(**kw, baseline="mean")}, n)
    for k in ("default", "none"):
        torch.testing.assert_close(g[k], g["exact"], rtol=1e-10, atol=1e-12)
    score = g["exact"] - g["path"]
    torch.testing.assert_close(g["mean"], g["path"] + (n - 1) / n * score, rtol=1e-10,
                               atol=1e-12)
    assert (g["mean"] - g["exact"]).norm() > 0.1 * g["exact"].norm()


def test_pdpo_offline_logs_the_self_normalised_objective():
    # weights (3/4, 1/4): Ĵ = Σ w̃ ℓ = 3/4 softplus(−ln 3) + 1/4 ln 2 (unweighted mean: 0.5 each)
    b = lp([-2.0 + math.log(3.0), -3.0], [-3.0, -1.0], [-2.0, -3.0], [-3.0, -1.0])
    losses, m = preference_loss("pdpo_offline", b, LossParams(beta=1.0))
    want = 0.75 * sp(-math.log(3.0)) + 0.25 * math.log(2.0)
    assert m["pdpo/objective"].item() == pytest.approx(want, abs=1e-12)
    assert losses.mean().item() == pytest.approx(want, abs=1e-12)


def _any_logps() -> Logps:
    return lp([-3.0, -2.0], [-5.0, -4.0], [-4.0, -2.5], [-4.0, -3.0], [2.0, 3.0], [5.0, 1.0])


def test_label_smoothing_warns_once_for_losses_that_ignore_it(monkeypatch):
    import warnings

    from descentlab.preference import losses as L

    monkeypatch.setattr(L, "_WARNED", set())
    eps = LossParams(label_smoothing=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in LOSSES:
            for _ in range(2):
                preference_loss(name, _any_logps(), eps)
        preference_loss("ipo", _any_logps(), LossParams())          # ε = 0: nothing to say
    warned = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    ignoring = [n for n in LOSSES if n not in ("dpo", "robust")]
    assert len(warned) == len(ignoring)                              # once per loss
    for name, msg in zip(ignoring, warned):
        assert f"loss {name!r}" in msg and "label_smoothing=0.1" in msg


def test_simpo_logps_metrics_are_per_token_means():
    # log π / |y|: chosen (−3/2, −2/3), rejected (−5/5, −4/1)
    _, m = preference_loss("simpo", _any_logps(), LossParams(beta=2.0))
    assert m["logps/chosen"].item() == pytest.approx((-1.5 - 2 / 3) / 2, abs=1e-12)
    assert m["logps/rejected"].item() == pytest.approx((-1.0 - 4.0) / 2, abs=1e-12)
    assert m["rewards/chosen"].item() == pytest.approx(2.0 * (-1.5 - 2 / 3) / 2, abs=1e-12)
    # sequence sums for the losses whose TRL metrics are sums
    _, m = preference_loss("dpo", _any_logps(), LossParams())
    assert m["logps/chosen"].item() == pytest.approx(-2.5)


def test_ipo_per_token_default_and_sequence_sum_variant():
    # s₊ = −3 − (−4) = 1 over 2 tokens, s₋ = −5 − (−4) = −1 over 5 tokens, β = 0.5 (τ)
    params = dict(beta=0.5)
    a = lp([-3.0], [-5.0], [-4.0], [-4.0], [2.0], [5.0], grad=True)
    losses, m = preference_loss("ipo", a, LossParams(**params))      # default: TRL's means
    h = 1 / 2 - (-1 / 5)                                             # 0.7
    assert losses.item() == pytest.approx((h - 1.0) ** 2, abs=1e-12)  # 0.09
    assert m["rewards/chosen"].item() == pytest.approx(0.5 * 0.5, abs=1e-12)
    assert m["rewards/rejected"].item() == pytest.approx(0.5 * -0.2, abs=1e-12)
    assert m["logps/chosen"].item() == pytest.approx(-1.5, abs=1e-12)
    assert m["logps/rejected"].item() == pytest.approx(-1.0, abs=1e-12)
    losses.sum().backward()
    assert a.policy_chosen.grad.item() == pytest.approx(2 * (h - 1.0) / 2, abs=1e-12)
    assert a.policy_rejected.grad.item() == pytest.approx(-2 * (h - 1.0) / 5, abs=1e-12)
    b = lp([-3.0], [-5.0], [-4.0], [-4.0], grad=True)                # sums need no lengths
    losses, m = preference_loss("ipo", b, LossParams(**params, ipo_logratio="sum"))
    assert losses.item() == pytest.approx((2.0 - 1.0) ** 2, abs=1e-12)
    assert m["rewards/chosen"].item() == pytest.approx(0.5) and m["logps/chosen"].item() == -3.0
    with pytest.raises(InputError, match="ipo_logratio"):
        LossParams(ipo_logratio="nope")


@pytest.mark.parametrize("z", [-21.0, -25.0])
def test_sigmoid_losses_are_exact_for_large_margins(z):
    """ℓ = −log σ(z) = −z + log1p(e^z) and ∂ℓ/∂z = −σ(−z) in float64 for z far below −20,
    where ``softplus(−z)`` returns −z and the gradient 1 (errors e^z ≈ 1e-9..1e-11)."""
    want = -z + math.log1p(math.exp(z))
    dwant = -1 / (1 + math.exp(z))                                   # −σ(−z)
    a = lp([z], [0.0], grad=True)                                    # dpo_bg, γ = 0, β = 1
    losses, _ = preference_loss("dpo_bg", a, LossParams(beta=1.0, gamma=0.0))
    losses.sum().backward()
    assert abs(losses.item() - want) < 1e-14
    assert abs(a.policy_chosen.grad.item() - dwant) < 1e-15
    # dpo's ε term −ε log σ(−z) at z = −(large): the other tail
    eps = 0.1
    b = lp([0.0], [z], [0.0], [0.0], grad=True)                      # z_dpo = −z > 0
    losses, _ = preference_loss("dpo", b, LossParams(beta=1.0, label_smoothing=eps))
    exact = (1 - eps) * math.log1p(math.exp(z)) + eps * want
    assert abs(losses.item() - exact) < 1e-15
    # SimPO with a single token each: z = β(pc − pr) − margin
    c = lp([z], [0.0], lc=[1.0], lr=[1.0])
    simpo_loss = preference_loss("simpo", c, LossParams(beta=1.0, simpo_margin=0.0))[0]
    assert abs(simpo_loss.item() - want) < 1e-14
