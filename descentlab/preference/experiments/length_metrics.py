"""Measurements of the length lab (:mod:`.length`): samples, log-probs, accuracy, and the
per-example gradient norm against response length (note C's "basic calculus")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from descentlab.preference.experiments.variants import Variant
from descentlab.preference.losses import Logps, preference_loss
from descentlab.preference.oracles import good_words

if TYPE_CHECKING:
    from descentlab.preference.experiments.length import Lab


# ---- evaluation ------------------------------------------------------------------------

def sample_stats(model, lab: Lab, seed: int) -> dict[str, float]:
    """Sample ``eval_samples`` responses per evaluation prompt from ``model`` (temperature 1,
    a fixed seed: common random numbers across evaluations) and measure them:
    ``gen_length`` (tokens before eos; cut samples count ``max_new_tokens``), ``reward``
    (true reward), ``truncated`` (no eos), ``long_frac`` (longer than any data response),
    ``kl`` (mean log π(y) − log π₀(y), an unbiased estimate of KL(π‖π₀))."""
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_sequences, tokenize_prompt
    from descentlab.preference.onpolicy import OnPolicyConfig, sample_pairs

    cfg, tok = lab.cfg, lab.tokenizer
    eos = tok.eos_token_id
    pids = [tokenize_prompt(tok, p) for p in lab.eval_prompts]
    onp = OnPolicyConfig(max_new_tokens=cfg.max_new_tokens)
    prompts, samples = [], []
    for k in range(cfg.eval_samples // 2):
        a, b = sample_pairs(model, tok, pids, onp, seed * 7919 + k, lab.device)
        prompts += pids + pids
        samples += a + b
    lengths = [len(s) - (s[-1] == eos) for s in samples]
    texts = tok.batch_decode(samples, skip_special_tokens=True)
    reward = good_words([], texts)
    batch = {k: v.to(lab.device) for k, v in collate_sequences(prompts, samples,
                                                               tok.pad_token_id).items()}
    with torch.no_grad():
        lp = SequenceScorer(model)(**batch).sum
        lp0 = SequenceScorer(lab.pi0)(**batch).sum
    n = len(samples)
    return {"gen_length": sum(lengths) / n, "reward": sum(reward) / n,
            "truncated": sum(s[-1] != eos for s in samples) / n,
            "long_frac": sum(L > cfg.max_words for L in lengths) / n,
            "kl": (lp - lp0).mean().item()}


def pair_logps(model, lab: Lab, which: str) -> torch.Tensor:
    """``(n, 2)`` log π of (chosen, rejected): ``train`` = the first ``eval_pairs`` training
    pairs, ``heldout`` = every held-out pair."""
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.reference import compute_reference_logps

    pairs = lab.train_pairs if which == "train" else lab.heldout_pairs
    n = min(lab.cfg.eval_pairs, len(pairs)) if which == "train" else len(pairs)
    return compute_reference_logps(SequenceScorer(model), pairs, list(range(n)),
                                   lab.tokenizer.pad_token_id, lab.device, 64, desc="eval")


def _logps(pol: torch.Tensor, ref: torch.Tensor, pairs) -> Logps:
    n = pol.shape[0]
    lc = torch.tensor([len(c) for c in pairs.chosen[:n]])
    lr = torch.tensor([len(r) for r in pairs.rejected[:n]])
    return Logps(pol[:, 0], pol[:, 1], ref[:n, 0], ref[:n, 1], lc, lr)


def heldout_accuracy(variant: Variant, pol: torch.Tensor, lab: Lab) -> float:
    """Fraction of held-out pairs whose implicit reward (the loss's own, TRL's
    ``rewards/accuracies``) ranks the chosen response strictly above the rejected one."""
    lp = _logps(pol.cpu(), lab.ref_heldout, lab.heldout_pairs)
    return preference_loss(variant.loss, lp, variant.params)[1]["rewards/accuracies"].item()


def evaluate(model, lab: Lab, variant: Variant | None = None) -> dict[str, float]:
    """Every tracked quantity of ``model`` (flat dict of floats)."""
    tr, ho = pair_logps(model, lab, "train"), pair_logps(model, lab, "heldout")
    out = {**sample_stats(model, lab, lab.seed),
           "train_logp_chosen": tr[:, 0].mean().item(), "train_logp_rejected": tr[:, 1].mean().item(),
           "heldout_logp_chosen": ho[:, 0].mean().item(),
           "heldout_logp_rejected": ho[:, 1].mean().item()}
    if variant is not None:
        out["heldout_accuracy"] = heldout_accuracy(variant, ho, lab)
    return out


# ---- the basic-calculus diagnostic -------------------------------------------------------

def _fit_slope(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares slope of log y on log x, and the Pearson correlation of x and y."""
    lx = torch.tensor(x, dtype=torch.float64).log()
    ly = torch.tensor(y, dtype=torch.float64).clamp(min=1e-30).log()
    slope = ((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    r = torch.corrcoef(torch.stack([xt, yt]))[0, 1]
    return slope.item(), r.item()


def gradnorm_diagnostic(model, lab: Lab, variants: dict[str, Variant]) -> dict:
    """Per-example gradient norms against response length, for ``grad_examples`` pairs.

    For each pair the gradients g± = ∇_θ log π(y±|x) are taken one example at a time; a
    loss's per-example gradient is ∇ℓ_i = a₊ g₊ + a₋ g₋ with a± = B·∂(mean batch loss)/∂log
    π(y±)_i (all the registry's losses are functions of the sequence log-probs), so
    ‖∇ℓ_i‖² = a₊²‖g₊‖² + a₋²‖g₋‖² + 2a₊a₋ g₊·g₋. Returns the lengths (response tokens,
    eos included), ``seq_norm`` ‖∇log π(y)‖ for every response, per loss the norms, and the
    fitted exponents (slope of log-norm on log-length) with Pearson correlations.
    """
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_pairs

    pairs, n = lab.train_pairs, min(lab.cfg.grad_examples, len(lab.train_pairs))
    was = model.training
    model.eval()
    params = [p for p in model.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    scorer = SequenceScorer(model)
    sq_c, sq_r, dot, pol = [], [], [], []
    for i in range(n):
        b = {k: v.to(lab.device) for k, v in collate_pairs(pairs, [i], lab.tokenizer.pad_token_id).items()}
        lp = scorer(b["input_ids"], b["attention_mask"], b["response_mask"]).sum      # (2,)
        gc = torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp[0], params, retain_graph=True,
                                                                   allow_unused=False)])
        gr = torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp[1], params)])
        sq_c.append(gc.pow(2).sum().item())
        sq_r.append(gr.pow(2).sum().item())
        dot.append((gc * gr).sum().item())
        pol.append(lp.detach().cpu())
    for p, f in zip(params, flags):
        p.requires_grad_(f)
    model.train(was)
    pol_t = torch.stack(pol).double()                                               # (n, 2)
    lc = [len(c) for c in pairs.chosen[:n]]
    lr = [len(r) for r in pairs.rejected[:n]]
    sc, sr, d = (torch.tensor(v, dtype=torch.float64) for v in (sq_c, sq_r, dot))
    seq_len, seq_norm = lc + lr, (sc.sqrt().tolist() + sr.sqrt().tolist())
    out: dict = {"seq_length": seq_len, "seq_norm": seq_norm, "pair_length":
                 [a + b for a, b in zip(lc, lr)], "losses": {}}
    out["seq_slope"], out["seq_corr"] = _fit_slope(seq_len, seq_norm)
    for name, v in variants.items():
        c = pol_t[:, 0].clone().requires_grad_(True)
        r = pol_t[:, 1].clone().requires_grad_(True)
        lp = Logps(c, r, lab.ref_train[:n, 0].double(), lab.ref_train[:n, 1].double(),
                   torch.tensor(lc), torch.tensor(lr))
        loss = preference_loss(v.loss, lp, v.params)[0].mean()
        ac, ar = (n * g for g in torch.autograd.grad(loss, (c, r)))
        norm = (ac ** 2 * sc + ar ** 2 * sr + 2 * ac * ar * d).clamp(min=0).sqrt()
        slope, corr = _fit_slope(out["pair_length"], norm.tolist())
        out["losses"][name] = {"norm": norm.tolist(), "slope": slope, "corr": corr}
    return out
