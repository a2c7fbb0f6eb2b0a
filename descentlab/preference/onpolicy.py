"""On-policy preference training: J_PDPO of note C (SPEC C).

Each micro-batch takes ``batch_size`` prompts, samples two responses per prompt from the
current policy (one batched ``generate``), scores them with a reward (a Python function or
a reward model, :mod:`descentlab.preference.oracles`), labels the preferred one
(deterministic or Bradley–Terry), scores both with the reference, and hands the pair to a
loss from the registry — ``pdpo`` adds the score-function term that makes the gradient the
gradient of E_{y,y'∼π_θ}[ℓ]; any other loss (``dpo``…) gives plain "online DPO" for
comparison.

Sampling uses a generator seeded from ``(seed, step, micro, rank)`` inside a forked RNG,
so the batch is a deterministic function of the step and the parameters: the shared loop's
exact ``--resume`` holds here too. For ∇J to be the score-function gradient, samples must
come from π itself: keep ``temperature=1`` and ``top_k=0`` (the defaults).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from descentlab.core.config import check_config, option
from descentlab.core.training import (
    BatchContext,
    TrainConfig,
    indexed_batches,
    train,
)
from descentlab.lm.logprobs import SequenceScorer, no_cudnn_attention
from descentlab.preference.data import (
    TokenizedPairs,
    collate_pairs,
    collate_sequences,
    fit_prompts,
    ids_fingerprint,
    require_chat_template,
    tokenize_prompt,
)
from descentlab.preference.losses import LossParams, needs_reference
from descentlab.preference.offline import (
    PrefConfig,
    PrefTrainResult,
    apply_lora,
    check_and_evaluate,
    fit_context,
    make_loss_fn,
    prepare_model,
)
from descentlab.preference.oracles import LABELERS, RewardFn, check_reward, label, score
from descentlab.preference.reference import reference_scorer


@dataclass
class OnPolicyConfig:
    """Sampling and labelling for on-policy training."""

    reward: str = option("descentlab.preference.oracles:good_words",
                         "preference oracle: module:function(prompts, responses) -> rewards, "
                         "or a local reward-model folder")
    labels: str = option("deterministic", "how rewards become labels: higher wins, or "
                         "Bradley-Terry sampled", choices=LABELERS)
    bt_temperature: float = option(1.0, "Bradley-Terry temperature τ: P(y≻y') = σ((r−r')/τ)",
                                   gt=0)
    max_new_tokens: int = option(12, "tokens sampled per response", min=1)
    temperature: float = option(1.0, "sampling temperature (1 = sample from π itself)", gt=0)
    top_k: int = option(0, "sample from the top-k tokens only (0 = all, as J_PDPO assumes)",
                        min=0)

    def __post_init__(self) -> None:
        check_config(self)


def _seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 1099511628211) % 2**63
    return h


def sampled_lengths(tokens: torch.Tensor, eos_id: int | list[int] | None) -> torch.Tensor:
    """``(N,)`` lengths of sampled responses ``tokens (N, L)`` as ``generate`` produced them:
    up to and including the first eos, else all ``L`` tokens.

    Only what follows the first eos is ``generate``'s padding. Nothing else is dropped: a
    sampled pad id (pad ≠ eos) is a real token, and an eos that equals the pad id is the
    response's last token, scored once.
    """
    N, L = tokens.shape
    ids = [] if eos_id is None else [eos_id] if isinstance(eos_id, int) else list(eos_id)
    if not ids:
        return torch.full((N,), L, dtype=torch.long)
    is_eos = torch.isin(tokens, torch.tensor(ids, device=tokens.device))      # (N, L)
    first = is_eos.int().argmax(-1)                                           # (N,)
    return torch.where(is_eos.any(-1), first + 1, L).cpu()


@torch.no_grad()
def sample_pairs(model, tokenizer, prompt_ids: list[list[int]], cfg: OnPolicyConfig,
                 seed: int, device: torch.device) -> tuple[list[list[int]], list[list[int]]]:
    """Two sampled responses per prompt (lists of token ids), from one batched generate.

    Prompts are left-padded; sampling runs in eval mode inside a forked RNG seeded ``seed``.
    Each response is exactly what was sampled (:func:`sampled_lengths`), so the scorer sees
    the sequences whose probability the sampler used.
    """
    pad = tokenizer.pad_token_id
    enc = collate_sequences(prompt_ids, [[] for _ in prompt_ids], pad, padding_side="left")
    ids, attn, P = enc["input_ids"], enc["attention_mask"], enc["input_ids"].shape[1]
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), no_cudnn_attention():
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device),
                             do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k,
                             top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                             num_return_sequences=2, pad_token_id=pad,
                             eos_token_id=tokenizer.eos_token_id)
    model.train(was_training)
    resp = out[:, P:]                                                   # (2B, new)
    n = sampled_lengths(resp, tokenizer.eos_token_id).tolist()          # (2B,)
    rows = [row[:k] for row, k in zip(resp.tolist(), n)]
    return rows[0::2], rows[1::2]


def make_onpolicy_batch_fn(prompts: list, tokenizer, reward: RewardFn, cfg: OnPolicyConfig,
                           live_ref: Callable | None, max_length: int,
                           max_prompt_length: int | None = None,
                           prompt_ids: list[list[int]] | None = None
                           ) -> Callable[[int, int, BatchContext], dict]:
    """``batch_fn(step, micro, ctx)``: sample, score, label, attach reference log-probs.

    Prompts (``prompt_ids``: already tokenized by :func:`tokenize_prompt`, else tokenized
    here) keep their last ``max_prompt_length`` tokens
    (:func:`~descentlab.preference.data.fit_prompts`, ``keep_end``: a prompt is never
    dropped); what that did is ``batch_fn.truncation``.
    ``batch_fn.stats``: seconds spent in ``generate`` and tokens sampled so far (this
    process); ``sample/tokens`` per micro-batch is also a logged metric."""
    if prompt_ids is None:
        prompt_ids = [tokenize_prompt(tokenizer, p) for p in prompts]
    prompt_ids, kept, report = fit_prompts(prompt_ids, max_length=max_length,
                                           max_prompt_length=max_prompt_length,
                                           truncation="keep_end")
    prompt_text = [prompts[k] if isinstance(prompts[k], str) else tokenizer.decode(ids)
                   for k, ids in zip(kept, prompt_ids)]

    def make_batch(idx: list[int], step: int, micro: int, ctx: BatchContext) -> dict:
        seed = _seed(ctx.seed, step, micro, ctx.rank)
        model = ctx.model.model if isinstance(ctx.model, SequenceScorer) else ctx.model
        t0 = time.perf_counter()
        a, b = sample_pairs(model, tokenizer, [prompt_ids[i] for i in idx], cfg, seed, ctx.device)
        seconds = time.perf_counter() - t0
        texts = [prompt_text[i] for i in idx]
        ra = score(reward, texts, tokenizer.batch_decode(a, skip_special_tokens=True))
        rb = score(reward, texts, tokenizer.batch_decode(b, skip_special_tokens=True))
        a_wins = label(ra, rb, cfg.labels, cfg.bt_temperature,
                       torch.Generator().manual_seed(seed))
        chosen = [x if w else y for x, y, w in zip(a, b, a_wins.tolist())]
        rejected = [y if w else x for x, y, w in zip(a, b, a_wins.tolist())]
        pairs = TokenizedPairs([prompt_ids[i] for i in idx], chosen, rejected)
        batch = collate_pairs(pairs, list(range(len(idx))), tokenizer.pad_token_id)
        if live_ref is not None:
            batch["ref_logps"] = live_ref({k: v.to(ctx.device) for k, v in batch.items()}).cpu()
        tokens = sum(map(len, a)) + sum(map(len, b))
        # sampling cost (generate only), apart from training: wall time stays out of the log
        # (which must be a deterministic function of the run, for exact resume)
        batch_fn.stats["seconds"] += seconds
        batch_fn.stats["tokens"] += tokens
        batch["sample/tokens"] = torch.tensor(float(tokens))
        batch["oracle/reward"] = torch.cat([ra, rb])
        batch["oracle/reward_chosen"] = torch.where(a_wins, ra, rb)
        batch["oracle/reward_rejected"] = torch.where(a_wins, rb, ra)
        return batch

    batch_fn = indexed_batches(len(prompt_ids), make_batch, with_context=True)
    batch_fn.stats = {"seconds": 0.0, "tokens": 0}    # generate() time and sampled tokens
    batch_fn.truncation = report
    return batch_fn


def train_onpolicy(model, tokenizer, prompts: list, *, pref: PrefConfig, params: LossParams,
                   onp: OnPolicyConfig, train_cfg: TrainConfig,
                   out_dir: str | os.PathLike | None, accelerator, reward: RewardFn,
                   ref_model=None, resume: bool = False, extend: bool = False,
                   settings: dict[str, Any] | None = None, stop_at_step: int | None = None,
                   on_step: Callable | None = None, eval_rows: list[dict] | None = None,
                   model_source=None) -> PrefTrainResult:
    """Optimise ``pref.loss`` (normally ``pdpo``) on freshly sampled, oracle-labelled pairs.

    The reference (for γ > 0) is live: a frozen copy of the initial policy, the given
    ``ref_model``, or — with LoRA — the base model with adapters disabled. ``eval_rows``:
    held-out preference pairs scored on the eval schedule, as in
    :func:`~descentlab.preference.offline.train_offline` (``pdpo`` is scored as ``dpo_bg``).
    ``reward`` is tried on the first prompt before any work (:func:`~descentlab.preference.
    oracles.check_reward`). Prompts keep their last ``max_prompt_length`` (default
    ``max_length // 2``; at most ``max_length − 1``) tokens (``keep_end`` whatever
    ``pref.truncation`` says: a prompt is never dropped), ``max_length`` being capped so
    that prompt + ``max_new_tokens`` fit the model; how many were cut is
    ``result.truncation`` (count and share, also a warning).
    ``settings`` (the caller's, e.g. the reward's name) join :func:`resume_settings`.
    """
    model = prepare_model(model, tokenizer, pref, accelerator.device)
    if prompts and isinstance(prompts[0], list):
        require_chat_template(tokenizer)
    pref, context = fit_context(model, pref, reserve=onp.max_new_tokens)
    check_reward(reward, prompts[0] if prompts and isinstance(prompts[0], str) else "")
    prompt_ids = [tokenize_prompt(tokenizer, p) for p in prompts]
    _, every, eval_fn, eval_report = check_and_evaluate(
        model, tokenizer, pref=pref, params=params,
        data_fingerprint=ids_fingerprint(prompt_ids),  # the on-policy data, for resume
        settings={**dataclasses.asdict(onp), **(settings or {})}, train_cfg=train_cfg,
        out_dir=out_dir, resume=resume, extend=extend, accelerator=accelerator,
        eval_rows=eval_rows, ref_model=ref_model, model_source=model_source)
    model = apply_lora(model, pref)
    live_ref = None
    if needs_reference(pref.loss, params):
        live_ref = reference_scorer(model, ref_model, pref.fused_head, accelerator.device,
                                    accelerator.autocast)
    batch_fn = make_onpolicy_batch_fn(prompts, tokenizer, reward, onp, live_ref, pref.max_length,
                                      pref.max_prompt_length, prompt_ids)
    scorer = SequenceScorer(model, pref.fused_head)
    res = train(scorer, make_loss_fn(pref.loss, params), batch_fn, train_cfg, out_dir,
                resume=resume, extend=extend, settings=every, accelerator=accelerator,
                stop_at_step=stop_at_step, desc=f"prefopt on-policy {pref.loss}",
                on_step=on_step, eval_fn=eval_fn)
    return PrefTrainResult(**{**vars(res), "model": res.model.model}, max_length=pref.max_length,
                           context=context, truncation=batch_fn.truncation,
                           eval_truncation=eval_report,
                           sample_seconds=batch_fn.stats["seconds"],
                           sample_tokens=batch_fn.stats["tokens"])
