"""Length lab: does the proper loss remove the length bias? A tiny causal LM on CPU.

The synthetic language (issue 5, note C's "basic calculus" question). A prompt is
``describe the <subject> :``; a response is ``L`` words, ``L ∼ U{min_words … max_words}``,
each word neutral with probability ``neutral_frac``, else good with probability ``q`` and bad
otherwise, ``q ∼ U(0, 1)`` per response. The true reward is
:func:`descentlab.preference.oracles.good_words` = (#good − #bad) / #words: it depends on
content only. A pair is two independent responses to one prompt labelled by Bradley–Terry,
P(a ≻ b) = σ((r_a − r_b)/τ). For every L the reward is symmetric around 0, so a response of
any length wins half its comparisons: chosen and rejected have the same length distribution.

Pipeline per seed: tokenizer and tiny GPT-2 from a config → supervised fine-tuning on
responses of the language (π₀) → each loss setting trained from π₀ under the same budget
(steps, batch, learning rate) with the shared loop (:func:`descentlab.core.training.train`):
offline losses on the pairs with precomputed reference log-probs, ``pdpo`` on pairs sampled
from π and labelled by the same reward (:mod:`descentlab.preference.onpolicy`). Every
``eval_every`` steps: mean generated length, true reward of samples, KL estimate, held-out
preference accuracy (the loss's own implicit reward, TRL's ``rewards/accuracies``) and
chosen/rejected log-probs on training and held-out pairs. The per-example gradient norm
against response length is measured at π₀ and at the end (:func:`gradnorm_diagnostic`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError
from descentlab.core.io import atomic_write, read_json, write_json
from descentlab.core.progress import progress
from descentlab.lm.tiny import tiny_option
from descentlab.preference.data import BAD_WORDS, GOOD_WORDS, SUBJECTS
from descentlab.preference.experiments.length_metrics import (
    evaluate,
    gradnorm_diagnostic,
    heldout_accuracy,
)
from descentlab.preference.experiments.variants import Variant, aggregate, build_variants
from descentlab.preference.losses import BASELINES, IPO_LOGRATIOS
from descentlab.preference.oracles import good_words

NEUTRAL_WORDS = ("the", "and", "very", "so", "quite", "then", "also", "still")


@dataclass
class Config:
    """The length lab: language, model, SFT, preference training, evaluation."""

    n_sft: int = option(2000, "responses in the supervised fine-tuning set (π₀)", min=1)
    n_train_pairs: int = option(512, "preference pairs to train on", min=1)
    n_heldout_pairs: int = option(128, "held-out preference pairs", min=1)
    min_words: int = option(2, "shortest response (words)", min=1)
    max_words: int = option(10, "longest response (words)", min=1)
    neutral_frac: float = option(0.3, "probability that a word is neutral (< 1)", min=0)
    bt_temperature: float = option(0.1, "Bradley–Terry temperature τ of the labels (reward "
                                   "in [-1, 1])", gt=0)
    n_layer: int = tiny_option("n_layer", 2)
    n_embd: int = tiny_option("n_embd", 64)     # the lab's GPT-2 has 2 heads: even
    sft_steps: int = option(400, "SFT optimiser steps", min=1)
    sft_lr: float = option(3e-3, "SFT learning rate", gt=0)
    sft_batch: int = option(32, "SFT sequences per step", min=1)
    steps: int = option(200, "preference optimiser steps (same budget for every loss)", min=1)
    lr: float = option(5e-4, "preference learning rate (AdamW, warmup + cosine)", gt=0)
    batch_size: int = option(16, "pairs per preference step", min=1)
    warmup_steps: int = option(10, "warmup steps of the preference runs", min=0)
    beta: float = option(0.1, "β of the DPO family, IPO's τ and pdpo", gt=0)
    gamma_ratios: tuple[float, ...] = option((0.0, 0.5, 2.0), "γ/β values of dpo_bg "
                                             "(γ/β = 1 is dpo)", min=0)
    simpo_beta: float = option(2.0, "β of SimPO (per-token normalised log-probs)", gt=0)
    simpo_margin: float = option(0.5, "SimPO margin")
    rdpo_alpha: float = option(0.01, "R-DPO length-difference weight α (only with "
                               "--losses ... rdpo)")
    baseline: str = option("loo", "pdpo score-function baseline (see prefopt train --help; "
                           "mean is biased)", choices=BASELINES)
    ipo_logratio: str = option("mean", "IPO's log-ratios: per-token means (TRL's ipo) or "
                               "sequence sums (the paper's Eq. 17)", choices=IPO_LOGRATIOS)
    losses: tuple[str, ...] = option(("dpo", "dpo_bg", "ipo", "simpo", "pdpo", "pdpo_offline"),
                                     "loss settings to compare (dpo_bg expands to every γ/β)")
    max_new_tokens: int = option(24, "tokens sampled per response (evaluation and pdpo)", min=1)
    eval_every: int = option(20, "steps between evaluations", min=1)
    eval_prompts: int = option(64, "held-out prompts sampled at each evaluation", min=1)
    eval_samples: int = option(4, "samples per prompt at each evaluation (even)", min=2)
    eval_pairs: int = option(128, "training pairs whose log-probs are tracked", min=1)
    grad_examples: int = option(48, "pairs in the per-example gradient-norm diagnostic", min=1)
    seeds: int = option(5, "independent repetitions (seed, seed+1, ...): data, model, runs",
                        min=1)

    def __post_init__(self) -> None:
        check_config(self)
        if self.min_words > self.max_words:
            raise field_error(self, "min_words", f"must be <= max_words ({self.max_words})")
        if self.eval_samples % 2:
            raise field_error(self, "eval_samples", "must be an even number")
        if not self.neutral_frac < 1:
            raise field_error(self, "neutral_frac", "must be < 1")
        if self.n_embd % 2:
            raise field_error(self, "n_embd", "must be even (2 heads)")

    def variants(self) -> dict[str, Variant]:
        return build_variants(self.losses, beta=self.beta, gamma_ratios=self.gamma_ratios,
                              simpo_beta=self.simpo_beta, simpo_margin=self.simpo_margin,
                              rdpo_alpha=self.rdpo_alpha, baseline=self.baseline,
                              ipo_logratio=self.ipo_logratio, allowed=("offline", "onpolicy"))


# --quick: one seed, small data, short runs (about a minute on an idle 2-core CPU)
QUICK: dict = {"n_sft": 800, "n_train_pairs": 256, "n_heldout_pairs": 64, "sft_steps": 150,
               "steps": 60, "eval_every": 20, "eval_prompts": 32, "eval_samples": 2,
               "eval_pairs": 64, "grad_examples": 24, "seeds": 1}


# ---- the synthetic language ------------------------------------------------------------

def _response(rng: random.Random, cfg: Config) -> str:
    q = rng.random()
    words = []
    for _ in range(rng.randint(cfg.min_words, cfg.max_words)):
        u = rng.random()
        pool = NEUTRAL_WORDS if u < cfg.neutral_frac else (
            GOOD_WORDS if rng.random() < q else BAD_WORDS)
        words.append(rng.choice(pool))
    return " " + " ".join(words)


def make_rows(cfg: Config, seed: int) -> dict[str, list[dict]]:
    """``{"sft": [{prompt, response}], "train"/"heldout": [{prompt, chosen, rejected}]}``."""
    rng = random.Random(seed)

    def prompt() -> str:
        return f"describe the {rng.choice(SUBJECTS)} :"

    sft = [{"prompt": prompt(), "response": _response(rng, cfg)} for _ in range(cfg.n_sft)]

    def pairs(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            p, a, b = prompt(), _response(rng, cfg), _response(rng, cfg)
            ra, rb = good_words([p, p], [a, b])
            # σ((r_a − r_b)/τ) written with tanh: no overflow for a tiny τ
            a_wins = rng.random() < 0.5 * (1 + math.tanh((ra - rb) / (2 * cfg.bt_temperature)))
            rows.append({"prompt": p, "chosen": a if a_wins else b,
                         "rejected": b if a_wins else a})
        return rows

    return {"sft": sft, "train": pairs(cfg.n_train_pairs), "heldout": pairs(cfg.n_heldout_pairs)}


# ---- the lab: everything a run needs, built once per seed ------------------------------

@dataclass
class Lab:
    """Tokenizer, π₀ and the tokenized data of one seed (built by :func:`build_lab`)."""

    cfg: Config
    seed: int
    device: torch.device
    tokenizer: Any
    pi0: torch.nn.Module
    train_pairs: Any             # TokenizedPairs
    heldout_pairs: Any
    ref_train: torch.Tensor      # (N, 2) log π₀ of (chosen, rejected)
    ref_heldout: torch.Tensor    # (M, 2)
    train_prompts: list[str]
    eval_prompts: list[str]
    data_stats: dict

    @property
    def fingerprint(self) -> str:
        """What every artefact of this seed records (:func:`_fingerprint`)."""
        return _fingerprint(self.cfg, self.seed)


def _own_checkpoint(out_dir: Path, tcfg, device: torch.device, fp: str) -> bool:
    """Whether ``out_dir`` holds a checkpoint of this run to continue (written with
    ``settings={"lab": fp}``); one of other settings (left by an interrupted run) or of an
    older version is not continued: the run starts over and replaces it."""
    from descentlab.core.training import CHECKPOINT, check_resume, make_accelerator, run_settings

    if not (out_dir / CHECKPOINT).exists():
        return False
    settings = run_settings(tcfg, make_accelerator(tcfg.precision, device), {"lab": fp})
    try:
        check_resume(out_dir, settings)
    except InputError:         # another run's (or unreadable): start over
        return False
    return True


def _sft(model, tok, rows: list[dict], cfg: Config, out_dir: Path, device: torch.device,
         seed: int, resume: bool) -> None:
    """Supervised fine-tuning (per-token NLL of the responses) with the shared loop."""
    from descentlab.core.training import TrainConfig, indexed_batches, train
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_sequences, tokenize_pairs

    tp = tokenize_pairs([{"prompt": r["prompt"], "chosen": r["response"],
                          "rejected": r["response"]} for r in rows], tok, max_length=64)

    def loss_fn(scorer, batch):
        out = scorer(batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        nll = -out.sum.sum() / out.n_tokens.sum()
        return nll, {"nll": nll.detach()}

    batches = indexed_batches(len(tp), lambda idx: collate_sequences(
        [tp.prompt[i] for i in idx], [tp.chosen[i] for i in idx], tok.pad_token_id))
    tcfg = TrainConfig(lr=cfg.sft_lr, max_steps=cfg.sft_steps, batch_size=cfg.sft_batch,
                       warmup_steps=max(1, cfg.sft_steps // 20), log_every=max(1, cfg.sft_steps // 10),
                       save_every=max(1, cfg.sft_steps // 4), precision="no", seed=seed)
    fp = _fingerprint(cfg, seed)
    train(SequenceScorer(model), loss_fn, batches, tcfg, out_dir, device=device,
          resume=resume and _own_checkpoint(out_dir, tcfg, device, fp), settings={"lab": fp},
          desc=f"SFT seed {seed}")


def build_lab(cfg: Config, seed: int, out_dir: Path, device: torch.device,
              resume: bool = False) -> Lab:
    """Data, tokenizer, tiny GPT-2, SFT (π₀, cached in ``out_dir/sft/pi0.pt``), reference
    log-probs of every pair. ``resume``: reuse π₀ (and continue the SFT checkpoint) only if
    written for this ``cfg`` and ``seed``."""
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.tiny import TinyLMConfig, build_tiny
    from descentlab.preference.data import row_texts, tokenize_pairs
    from descentlab.preference.reference import compute_reference_logps

    rows = make_rows(cfg, seed)
    texts = [r["prompt"] + r["response"] for r in rows["sft"]]
    texts += [t for r in rows["train"] + rows["heldout"] for t in row_texts(r)]
    tiny = TinyLMConfig(n_layer=cfg.n_layer, n_head=2, n_embd=cfg.n_embd, n_positions=64)
    model, tok = build_tiny(texts, tiny, seed=seed)
    model.to(device)
    pi0_path, fp = out_dir / "sft" / "pi0.pt", _fingerprint(cfg, seed)
    saved = torch.load(pi0_path, map_location=device, weights_only=True) \
        if resume and pi0_path.exists() else {}
    if saved.get("fingerprint") == fp:
        model.load_state_dict(saved["state_dict"])
    else:
        _sft(model, tok, rows["sft"], cfg, out_dir / "sft", device, seed, resume)
        with atomic_write(pi0_path, "wb") as f:
            torch.save({"fingerprint": fp, "state_dict": model.state_dict()}, f)
    model.eval().requires_grad_(False)
    tr = tokenize_pairs(rows["train"], tok, max_length=64)
    ho = tokenize_pairs(rows["heldout"], tok, max_length=64)
    scorer = SequenceScorer(model)
    ref_tr = compute_reference_logps(scorer, tr, list(range(len(tr))), tok.pad_token_id, device, 64)
    ref_ho = compute_reference_logps(scorer, ho, list(range(len(ho))), tok.pad_token_id, device, 64)
    lens = {k: [len(r[k].split()) for r in rows["train"]] for k in ("chosen", "rejected")}
    stats = {"chosen_words": sum(lens["chosen"]) / len(lens["chosen"]),
             "rejected_words": sum(lens["rejected"]) / len(lens["rejected"]),
             "chosen_reward": sum(good_words([], [r["chosen"] for r in rows["train"]]))
             / len(rows["train"]),
             "rejected_reward": sum(good_words([], [r["rejected"] for r in rows["train"]]))
             / len(rows["train"])}
    return Lab(cfg, seed, device, tok, model, tr, ho, ref_tr, ref_ho,
               [r["prompt"] for r in rows["train"]],
               [r["prompt"] for r in rows["heldout"][:cfg.eval_prompts]], stats)


# ---- training and the whole lab ---------------------------------------------------------

# the terminal table's columns
TABLE_FIELDS = ("final_expected_reward", "mean_length_delta", "heldout_accuracy",
                "chosen_logp_delta", "rejected_logp_delta", "kl")
OUTPUTS = ("lab.json", "length_curves.png")   # mark OUT as an earlier run of this lab
RESUMABLE = True       # run() takes resume=: reuse π₀ and finished runs, continue the rest
FINAL_FIELDS = ("final_expected_reward", "reward_delta", "mean_length_delta",
                "final_mean_length", "heldout_accuracy", "chosen_logp_delta",
                "rejected_logp_delta", "heldout_chosen_logp_delta",
                "heldout_rejected_logp_delta", "kl", "truncated", "long_frac",
                "gradnorm_slope_init", "gradnorm_slope_final", "seconds")


def train_variant(lab: Lab, name: str, variant: Variant, out_dir: Path,
                  resume: bool = False) -> dict:
    """Train one loss setting from π₀ with the shared loop; returns (and writes to
    ``out_dir/result.json``) its evaluation records, training log and final diagnostic.
    ``resume``: reuse the result (or continue the checkpoint) only if written for this
    lab's config and seed (:attr:`Lab.fingerprint`)."""
    import contextlib
    import time

    from descentlab.core.training import TrainConfig, indexed_batches, train
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_pairs
    from descentlab.preference.offline import make_loss_fn
    from descentlab.preference.onpolicy import OnPolicyConfig, make_onpolicy_batch_fn
    from descentlab.preference.reference import reference_scorer

    done, fp = out_dir / "result.json", lab.fingerprint
    saved = read_json(done) if resume and done.exists() else {}
    if saved.get("fingerprint") == fp:
        return saved
    cfg, tok = lab.cfg, lab.tokenizer
    model = copy.deepcopy(lab.pi0).requires_grad_(True).train()
    tcfg = TrainConfig(lr=cfg.lr, max_steps=cfg.steps, batch_size=cfg.batch_size,
                       warmup_steps=cfg.warmup_steps, log_every=cfg.eval_every,
                       eval_every=cfg.eval_every, save_every=cfg.eval_every, precision="no",
                       seed=lab.seed)
    if variant.mode == "onpolicy":
        onp = OnPolicyConfig(labels="bt", bt_temperature=cfg.bt_temperature,
                             max_new_tokens=cfg.max_new_tokens)
        live = reference_scorer(model, lab.pi0, True, lab.device, contextlib.nullcontext)
        batch_fn = make_onpolicy_batch_fn(lab.train_prompts, tok, good_words, onp, live,
                                          max_length=64, max_prompt_length=64)
    else:
        batch_fn = indexed_batches(len(lab.train_pairs), lambda idx: collate_pairs(
            lab.train_pairs, idx, tok.pad_token_id, lab.ref_train))
    t0 = time.perf_counter()
    res = train(SequenceScorer(model), make_loss_fn(variant.loss, variant.params), batch_fn,
                tcfg, out_dir, device=lab.device,
                eval_fn=lambda scorer, step: evaluate(scorer.model, lab, variant),
                resume=resume and _own_checkpoint(out_dir, tcfg, lab.device, fp),
                settings={"lab": fp}, desc=f"{name} (seed {lab.seed})")
    seconds = time.perf_counter() - t0
    diag = gradnorm_diagnostic(res.model.model, lab, {name: variant})["losses"][name]
    evals = [{"step": r["step"], **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
             for r in res.history if any(k.startswith("eval/") for k in r)]
    keys = ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
            "oracle/reward", "grad_norm")
    out = {"evals": evals, "train_log": [{"step": r["step"], **{k: r[k] for k in keys if k in r}}
                                         for r in res.history],
           "gradnorm_final": {"slope": diag["slope"], "corr": diag["corr"]},
           "seconds": seconds, "fingerprint": fp}
    write_json(done, out)
    return out


def _finals(init: dict, init_acc: float, run: dict, diag_init: dict) -> dict[str, float]:
    last = run["evals"][-1]
    return {"final_expected_reward": last["reward"], "reward_delta": last["reward"] - init["reward"],
            "mean_length_delta": last["gen_length"] - init["gen_length"],
            "final_mean_length": last["gen_length"], "heldout_accuracy": last["heldout_accuracy"],
            "chosen_logp_delta": last["train_logp_chosen"] - init["train_logp_chosen"],
            "rejected_logp_delta": last["train_logp_rejected"] - init["train_logp_rejected"],
            "heldout_chosen_logp_delta": last["heldout_logp_chosen"] - init["heldout_logp_chosen"],
            "heldout_rejected_logp_delta": (last["heldout_logp_rejected"]
                                            - init["heldout_logp_rejected"]),
            "kl": last["kl"], "truncated": last["truncated"], "long_frac": last["long_frac"],
            "gradnorm_slope_init": diag_init["slope"],
            "gradnorm_slope_final": run["gradnorm_final"]["slope"], "seconds": run["seconds"]}


def _fingerprint(cfg: Config, seed: int) -> str:
    """sha256 of the config and a seed: ``lab.json``'s (the first seed) and what each seed's
    π₀, checkpoints and results record (that seed)."""
    return hashlib.sha256(json.dumps([asdict(cfg), seed], sort_keys=True).encode()).hexdigest()


def run(cfg: Config, out_dir: str | os.PathLike, seed: int = 0,
        device: torch.device | str = "cpu", resume: bool = False,
        on_seed: Callable[[int], None] | None = None) -> dict:
    """Every loss setting on ``cfg.seeds`` seeds; figures in ``out_dir``.

    ``resume``: reuse π₀ and finished runs found in ``out_dir`` (same config and seed, else
    an InputError) and continue unfinished ones from their checkpoints. Each of these
    records the fingerprint of the config and its seed, and only those of this config are
    reused: what a run of other settings left (an interrupted run into a folder of an
    earlier one) is redone and replaced, never mixed in.
    Returns ``{"experiment": "length", "config", "seeds", "eval_steps", "reference",
    "losses": {NAME: {FIELD, FIELD_std, "per_seed", "curves"}}, "gradnorm_scatter",
    "figures"}``.
    """
    from descentlab.preference.experiments.viz import plot_length

    out = Path(out_dir)
    device = torch.device(device)
    variants = cfg.variants()
    stamp = out / "lab.json"
    fp = _fingerprint(cfg, seed)
    if resume and stamp.exists() and read_json(stamp).get("fingerprint") != fp:
        raise InputError("this folder holds a run with another configuration or seed; "
                         "use a new --out or drop --resume", where=stamp)
    write_json(stamp, {"fingerprint": fp, "config": asdict(cfg), "seed": seed})
    seeds = list(range(seed, seed + cfg.seeds))
    per_seed: dict[str, list[dict]] = {n: [] for n in variants}
    hists: dict[str, list[list[dict]]] = {n: [] for n in variants}
    inits, diags, stats = [], [], []
    for s in seeds:
        sdir = out / f"seed{s}"
        lab = build_lab(cfg, s, sdir, device, resume)
        init = evaluate(lab.pi0, lab)
        diag = gradnorm_diagnostic(lab.pi0, lab, variants)
        inits.append(init)
        diags.append(diag)
        stats.append(lab.data_stats)
        for name, v in progress(variants.items(), total=len(variants), desc=f"seed {s}"):
            r = train_variant(lab, name, v, sdir / name, resume)
            acc0 = heldout_accuracy(v, lab.ref_heldout, lab)
            hists[name].append([{"step": 0, **init, "heldout_accuracy": acc0}] + r["evals"])
            per_seed[name].append(_finals(init, acc0, r, diag["losses"][name]))
        if on_seed is not None:
            on_seed(s)
    losses = {name: {"loss": v.loss, "mode": v.mode, "params": asdict(v.params),
                     **aggregate(per_seed[name], hists[name], FINAL_FIELDS)}
              for name, v in variants.items()}
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    reference = {"pi0": {k: mean(inits, k) for k in inits[0]},
                 "data": {k: mean(stats, k) for k in stats[0]},
                 "logp_gradnorm_slope": mean(diags, "seq_slope"),
                 "logp_gradnorm_corr": mean(diags, "seq_corr")}
    result = {"experiment": "length", "config": asdict(cfg), "seeds": seeds,
              "eval_steps": [h["step"] for h in hists[next(iter(hists))][0]],
              "reference": reference, "losses": losses,
              "gradnorm_scatter": {k: diags[0][k] for k in ("seq_length", "seq_norm",
                                                           "pair_length", "seq_slope")}
              | {"losses": {n: {"norm": d["norm"], "slope": d["slope"]}
                            for n, d in diags[0]["losses"].items()}}}
    result["figures"] = [str(p) for p in plot_length(result, out)]
    return result
