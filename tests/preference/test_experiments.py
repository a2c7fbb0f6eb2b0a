"""The preference experiments (issue 5): the bandit's exact quantities against hand-computed
cases, the length lab's pieces against direct computation, and both labs end to end through
the CLI (every loss and field in the JSON)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from descentlab.cli.main import main
from descentlab.preference.experiments import bandit, length, length_metrics
from descentlab.preference.experiments.bandit import Problem, exact_pair_objective, policy_metrics
from descentlab.preference.experiments.variants import aggregate, build_variants
from descentlab.preference.losses import Logps, LossParams, preference_loss

LN2 = math.log(2)


def _problem(ref_probs, reward, pairs) -> Problem:
    """A hand-made bandit: ``ref_probs``/``reward`` ``(P, K)``, pairs ``(prompt, +, -)``."""
    ref = torch.tensor(ref_probs, dtype=torch.float64).log()
    r = torch.tensor(reward, dtype=torch.float64)
    p, c, j = (torch.tensor(x) for x in zip(*pairs))
    seen = torch.zeros(ref.shape, dtype=torch.bool)
    seen[p, c] = True
    seen[p, j] = True
    feats = torch.zeros(*ref.shape, 2, dtype=torch.float64)
    return Problem(ref, r, feats, p, c, j, seen)


# ---- bandit: exact quantities --------------------------------------------------------------

def test_bandit_metrics_hand_computed():
    # π₀ = (1/4, 1/4, 1/2), r = (1, 0, -1), one pair (y₊ = 0, y₋ = 1): response 2 never sampled.
    pb = _problem([[0.25, 0.25, 0.5]], [[1.0, 0.0, -1.0]], [(0, 0, 1)])
    logp = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64).log()
    m = policy_metrics(logp, pb, beta=1.0, bt_temperature=1.0)
    assert m["expected_reward"] == pytest.approx(0.25)                 # .5·1 + .25·0 − .25
    assert m["kl"] == pytest.approx(0.25 * LN2)                        # .5 ln2 + .25 ln(1/2)
    assert m["entropy"] == pytest.approx(1.5 * LN2)
    assert m["offdata_mass"] == pytest.approx(0.25)
    assert m["best_mass"] == pytest.approx(0.5)
    assert m["pi_chosen"] == pytest.approx(0.5)
    assert m["pi_rejected"] == pytest.approx(0.25)
    m0 = policy_metrics(pb.ref_logp, pb, beta=1.0, bt_temperature=1.0)
    assert m0["expected_reward"] == pytest.approx(-0.25)
    assert m0["kl"] == pytest.approx(0.0, abs=1e-12)
    assert m0["offdata_mass"] == pytest.approx(0.5)
    assert m0["j_pdpo"] == pytest.approx(LN2)                          # z = 0 on every pair


def test_exact_j_pdpo_two_responses():
    # π = (.8, .2), π₀ uniform, r = (1, 0), β = 1, τ = 1:
    # J = π_a² ln2 + π_b² ln2 + 2 π_a π_b (σ(1) ℓ(a,b) + σ(−1) ℓ(b,a)),
    # ℓ(a,b) = softplus(−ln 4) = ln 1.25, ℓ(b,a) = softplus(ln 4) = ln 5.
    pb = _problem([[0.5, 0.5]], [[1.0, 0.0]], [(0, 0, 1)])
    logp = torch.tensor([[0.8, 0.2]], dtype=torch.float64).log()
    s = 1 / (1 + math.exp(-1))
    want = 0.68 * LN2 + 0.32 * (s * math.log(1.25) + (1 - s) * math.log(5))
    got = exact_pair_objective(logp, pb, "dpo", LossParams(beta=1.0), 1.0)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_pdpo_surrogate_is_unbiased_for_exact_gradient():
    """E over (a, b) ∼ π×π and the Bradley–Terry label of ∇(pdpo surrogate) = ∇J_PDPO, both
    enumerated exactly (one pair per batch, no baseline)."""
    torch.manual_seed(0)
    P, K = 2, 3
    pb = _problem(torch.softmax(torch.randn(P, K, dtype=torch.float64), -1).tolist(),
                  torch.randn(P, K, dtype=torch.float64).tolist(), [(0, 0, 1), (1, 2, 1)])
    params = LossParams(beta=0.7, gamma=0.3, baseline="none")
    theta = torch.randn(P, K, dtype=torch.float64, requires_grad=True)

    def logp():
        return torch.log_softmax(pb.ref_logp + theta, -1)

    exact = torch.autograd.grad(exact_pair_objective(logp(), pb, "dpo_bg", params, 0.5), theta)[0]
    expected = torch.zeros_like(theta)
    lp = logp()
    pi = lp.detach().exp()
    for x in range(P):
        for a in range(K):
            for b in range(K):
                p_ab = torch.sigmoid((pb.reward[x, a] - pb.reward[x, b]) / 0.5)
                for (c, r), prob in (((a, b), p_ab), ((b, a), 1 - p_ab)):
                    one = Logps(lp[x, c:c + 1], lp[x, r:r + 1], pb.ref_logp[x, c:c + 1],
                                pb.ref_logp[x, r:r + 1])
                    s = preference_loss("pdpo", one, params)[0].sum() / P   # mean over prompts
                    g = torch.autograd.grad(s, theta, retain_graph=True)[0]
                    expected += pi[x, a] * pi[x, b] * prob * g
    torch.testing.assert_close(expected, exact, rtol=1e-10, atol=1e-12)


def test_make_problem_pairs_and_seen_mask():
    cfg = bandit.Config(prompts=5, responses=6, pairs_per_prompt=3, seeds=1)
    pb = bandit.make_problem(cfg, seed=3)
    assert pb.chosen.shape == (15,) and (pb.chosen != pb.rejected).all()
    seen = torch.zeros(5, 6, dtype=torch.bool)
    seen[pb.prompt, pb.chosen] = True
    seen[pb.prompt, pb.rejected] = True
    assert torch.equal(seen, pb.seen) and (~pb.seen).any()
    for kind in ("tabular", "linear"):        # both parametrisations start at π₀
        pol = bandit.SoftmaxPolicy(pb, kind)
        torch.testing.assert_close(pol(), pb.ref_logp)


def test_build_variants_expands_gamma_ratios():
    v = build_variants(("dpo", "dpo_bg", "pdpo_exact"), beta=0.5, gamma_ratios=(0.0, 2.0),
                       simpo_beta=2.0, simpo_margin=0.5)
    assert list(v) == ["dpo", "dpo_bg_g0", "dpo_bg_g2", "pdpo_exact"]
    assert v["dpo_bg_g2"].params.gamma_ == 1.0 and v["dpo_bg_g0"].params.gamma_ == 0.0
    assert v["pdpo_exact"].mode == "exact"
    from descentlab.core.errors import InputError
    with pytest.raises(InputError):
        build_variants(("pdpo_exact",), beta=0.5, gamma_ratios=(), simpo_beta=1.0,
                       simpo_margin=0.0, allowed=("offline", "onpolicy"))


def test_aggregate_mean_std():
    agg = aggregate([{"a": 1.0}, {"a": 3.0}], [[{"step": 0, "x": 1.0}], [{"step": 0, "x": 2.0}]],
                    ("a",))
    assert agg["a"] == 2.0 and agg["a_std"] == pytest.approx(math.sqrt(2))
    assert agg["curves"]["x"]["mean"] == [1.5]


# ---- length lab: pieces ------------------------------------------------------------------

def test_language_lengths_match_and_labels_follow_reward():
    cfg = length.Config(n_sft=1, n_train_pairs=4000, n_heldout_pairs=1, bt_temperature=1e-6)
    rows = length.make_rows(cfg, seed=0)["train"]
    from descentlab.preference.oracles import good_words
    lc = [len(r["chosen"].split()) for r in rows]
    lr = [len(r["rejected"].split()) for r in rows]
    # equal length distributions (std of the difference of means ≈ 0.06 words)
    assert abs(sum(lc) / len(lc) - sum(lr) / len(lr)) < 0.25
    assert min(lc + lr) >= cfg.min_words and max(lc + lr) <= cfg.max_words
    rc = good_words([], [r["chosen"] for r in rows])
    rr = good_words([], [r["rejected"] for r in rows])
    assert all(a >= b for a, b in zip(rc, rr))                  # τ → 0: the better one wins


def test_fit_slope_power_law():
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    slope, corr = length_metrics._fit_slope(x, [3 * v ** 0.5 for v in x])
    assert slope == pytest.approx(0.5) and corr > 0.9


def test_gradnorm_diagnostic_matches_direct_per_example_gradients():
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.tiny import TinyLMConfig, build_tiny
    from descentlab.preference.data import collate_pairs, row_texts, tokenize_pairs
    from descentlab.preference.reference import compute_reference_logps

    cfg = length.Config(n_sft=4, n_train_pairs=6, n_heldout_pairs=2, grad_examples=4)
    rows = length.make_rows(cfg, seed=1)
    texts = [t for r in rows["train"] + rows["heldout"] for t in row_texts(r)]
    model, tok = build_tiny(texts, TinyLMConfig(n_layer=1, n_head=2, n_embd=16, n_positions=64))
    tr = tokenize_pairs(rows["train"], tok, max_length=64)
    ref = compute_reference_logps(SequenceScorer(model), tr, list(range(6)), tok.pad_token_id,
                                  torch.device("cpu")) + torch.tensor([[0.3, -0.2]])
    lab = length.Lab(cfg, 1, torch.device("cpu"), tok, model, tr, tr, ref, ref, [], [], {})
    variants = build_variants(("dpo_bg_g0.5", "simpo", "ipo"), beta=0.2, gamma_ratios=(),
                              simpo_beta=2.0, simpo_margin=0.5)
    diag = length_metrics.gradnorm_diagnostic(model, lab, variants)
    scorer = SequenceScorer(model)
    params = list(model.parameters())
    for name, v in variants.items():
        for i in range(4):
            b = collate_pairs(tr, [i], tok.pad_token_id)
            out = scorer(b["input_ids"], b["attention_mask"], b["response_mask"])
            lp = Logps(out.sum[:1], out.sum[1:], ref[i:i + 1, 0], ref[i:i + 1, 1],
                       out.n_tokens[:1], out.n_tokens[1:])
            g = torch.autograd.grad(preference_loss(v.loss, lp, v.params)[0][0], params)
            direct = torch.sqrt(sum((x ** 2).sum() for x in g)).item()
            assert diag["losses"][name]["norm"][i] == pytest.approx(direct, rel=1e-4)
    assert diag["pair_length"][0] == len(tr.chosen[0]) + len(tr.rejected[0])


# ---- end to end through the CLI ------------------------------------------------------------

def _check_json(path, lab_module, must):
    res = json.loads(path.read_text())
    assert res["experiment"] == lab_module.__name__.rsplit(".", 1)[1]
    cfg = lab_module.Config(**lab_module.QUICK)
    assert set(res["losses"]) == set(cfg.variants())
    for name, entry in res["losses"].items():
        for f in must:
            assert isinstance(entry[f], float) and math.isfinite(entry[f]), (name, f)
    return res


BANDIT_FIELDS = ("final_expected_reward", "offdata_mass", "chosen_logp_delta",
                 "rejected_logp_delta", "kl", "entropy")
LENGTH_FIELDS = ("final_expected_reward", "offdata_mass", "chosen_logp_delta",
                 "rejected_logp_delta", "mean_length_delta", "heldout_accuracy")


def test_bandit_quick_cli(tmp_path):
    out, js = tmp_path / "b", tmp_path / "b.json"
    assert main(["prefopt", "experiment", "bandit", "--quick", "--out", str(out),
                 "--json", str(js)]) == 0
    res = _check_json(js, bandit, BANDIT_FIELDS)
    L = res["losses"]
    # dpo_bg with γ = β is DPO, step for step
    assert L["dpo_bg_g1"]["curves"] == L["dpo"]["curves"]
    for e in L.values():
        assert e["kl"] >= 0 and 0 <= e["offdata_mass"] <= 1
        assert len(e["per_seed"]) == 2
    # DPO pushes the rejected responses down far more than the chosen ones
    assert L["dpo"]["rejected_logp_delta"] < L["dpo"]["chosen_logp_delta"]
    assert (out / "bandit_tabular_curves.png").exists()


def test_length_small_cli_and_resume(tmp_path, capsys):
    """A smaller-than---quick setting through the same code path (the full --quick takes
    about a minute), then --resume reuses every finished run."""
    out, js = tmp_path / "l", tmp_path / "l.json"
    small = ["--quick", "--n-sft", "160", "--sft-steps", "20", "--steps", "4",
             "--eval-every", "4", "--eval-prompts", "4", "--eval-pairs", "8", "--n-layer", "1",
             "--n-embd", "16", "--grad-examples", "4", "--n-train-pairs", "32",
             "--n-heldout-pairs", "8", "--max-new-tokens", "12"]
    assert main(["prefopt", "experiment", "length", *small, "--out", str(out),
                 "--json", str(js)]) == 0
    fields = tuple(f for f in LENGTH_FIELDS if f != "offdata_mass")
    res = _check_json(js, length, fields)
    assert res["eval_steps"] == [0, 4]
    data = res["reference"]["data"]
    assert abs(data["chosen_words"] - data["rejected_words"]) < 2
    assert data["chosen_reward"] > data["rejected_reward"]
    for e in res["losses"].values():
        assert 0 <= e["heldout_accuracy"] <= 1
    assert (out / "seed0" / "dpo" / "result.json").exists()
    # resume: nothing is retrained, the numbers are the same
    js2 = tmp_path / "l2.json"
    assert main(["prefopt", "experiment", "length", *small, "--out", str(out), "--resume",
                 "--json", str(js2)]) == 0
    res2 = json.loads(js2.read_text())
    for name in res["losses"]:
        assert res2["losses"][name]["per_seed"] == res["losses"][name]["per_seed"]
    # a different config in the same folder is refused with one line, exit 2
    assert main(["prefopt", "experiment", "length", *small, "--steps", "5", "--out", str(out),
                 "--resume"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_length_resume_never_mixes_in_another_configs_seed(tmp_path):
    """A (2 seeds) runs; B, other settings (β and the SFT's lr) into the same folder without
    resume, is interrupted after seed 0; C resumes B. C must reuse B's seed 0 and redo seed 1
    (whose π₀, checkpoints and results are A's), giving exactly a fresh B."""
    small = dict(length.QUICK, n_sft=160, sft_steps=20, steps=4, eval_every=4, eval_prompts=4,
                 eval_pairs=8, n_layer=1, n_embd=16, grad_examples=4, n_train_pairs=32,
                 n_heldout_pairs=8, max_new_tokens=12, losses=("dpo",), seeds=2)
    cfg_a, cfg_b = length.Config(**small), length.Config(**small, beta=0.2, sft_lr=1e-3)
    out = tmp_path / "l"
    a = length.run(cfg_a, out)

    def interrupt(seed):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        length.run(cfg_b, out, on_seed=interrupt)
    b_seed0 = (out / "seed0" / "dpo" / "result.json").read_text()
    c = length.run(cfg_b, out, resume=True)
    fresh = length.run(cfg_b, tmp_path / "fresh")
    assert (out / "seed0" / "dpo" / "result.json").read_text() == b_seed0     # reused

    def finals(res):
        return [{k: v for k, v in s.items() if k != "seconds"}
                for s in res["losses"]["dpo"]["per_seed"]]

    assert finals(c) == finals(fresh)
    assert finals(c)[1] != finals(a)[1]              # the settings do change seed 1's numbers
