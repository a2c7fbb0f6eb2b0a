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
    assert m["rewards/margins"].item() == pytest.approx(z)
    losses.sum().backward()
    s = 1 / (1 + math.exp(z))                          # σ(−z)
    assert a.policy_chosen.grad.item() == pytest.approx(-beta * s, abs=1e-12)
    assert a.policy_rejected.grad.item() == pytest.approx(beta * s, abs=1e-12)


def test_dpo_bg_gamma_zero_needs_no_reference():
    losses, _ = preference_loss("dpo_bg", lp([-1.0], [-2.0]), LossParams(beta=1.0, gamma=0.0))
    assert losses.item() == pytest.approx(sp(-1.0))


def test_ipo_simpo_rdpo_hinge_closed_forms():
    a = lp([-3.0], [-5.0], [-4.0], [-4.0], [2.0], [5.0])
    # IPO: (Δ - 1/(2β))² with Δ = 2, β = 0.5 -> (2 - 1)² = 1
    assert preference_loss("ipo", a, LossParams(beta=0.5))[0].item() == pytest.approx(1.0)
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
