"""Offline preference training on :mod:`descentlab.core.training` (SPEC D).

A trainer is a loss function plus the shared loop: :func:`make_loss_fn` scores the chosen
and rejected responses of a batch in one forward of a :class:`SequenceScorer` (fused LM
head on the response tokens only), reads the reference log-probs, and applies a loss from
:data:`descentlab.preference.losses.LOSSES`.

Reference log-probs come from :mod:`descentlab.preference.reference` (precomputed once and
cached on disk by default, or scored live). Also here: the configs the preference trainers
add to the loop (:class:`PrefConfig`, :class:`PrefTrainConfig`, :data:`PRESETS`), fitting
``max_length`` to the model's context, and what a resume compares (:func:`resume_settings`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from descentlab.core.config import check_config, option
from descentlab.core.errors import InputError
from descentlab.core.training import (
    TrainConfig,
    TrainResult,
    check_resume,
    indexed_batches,
    run_settings,
    train,
    train_option,
)
from descentlab.lm.logprobs import SequenceScorer
from descentlab.lm.recompute import enable_checkpointing, enable_selective_recompute
from descentlab.lm.tiny import context_length
from descentlab.preference.data import (
    TRUNCATIONS,
    TokenizedPairs,
    TruncationReport,
    collate_pairs,
    set_chat_template,
    tokenize_pairs,
)
from descentlab.preference.losses import LOSSES, Logps, LossParams, needs_reference, preference_loss
from descentlab.preference.reference import (
    cached_reference_logps,
    model_fingerprint,
    reference_cache,
    reference_scorer,
)


@dataclass
class PrefTrainConfig(TrainConfig):
    """:class:`TrainConfig` with defaults for a pretrained model (TRL's DPOConfig: lr 1e-6 for
    full fine-tuning); a tiny random-init model starts from ``PRESETS["tiny"]`` instead."""

    lr: float = train_option("lr", 1e-6, "peak learning rate of AdamW (TRL's default for full "
                             "fine-tuning of a pretrained LM; LoRA typically 5e-6..5e-5; the "
                             "tiny preset: 5e-4)")
    warmup_steps: int = train_option("warmup_steps", 5)
    max_steps: int = train_option("max_steps", 60)
    batch_size: int = train_option("batch_size", 8, "preference pairs per micro-batch per "
                                   "process")
    log_every: int = train_option("log_every", 5)


#: Named starting points of :class:`PrefTrainConfig` (fields a caller sets still win):
#: ``default`` suits a pretrained model; ``tiny`` a random-init GPT-2 that must learn from
#: scratch (a pretrained model's lr would leave it untrained).
PRESETS: dict[str, dict[str, Any]] = {"default": {}, "tiny": {"lr": 5e-4}}
TINY_PRESET = PRESETS["tiny"]


def train_config_for(model: str, **overrides: Any) -> PrefTrainConfig:
    """The base :class:`PrefTrainConfig` for a model name (``tiny``: ``PRESETS["tiny"]``)."""
    return PrefTrainConfig(**{**PRESETS["tiny" if str(model) == "tiny" else "default"],
                              **overrides})


@dataclass
class PrefConfig:
    """What the preference trainers add to the loop: the loss, the reference, LoRA."""

    loss: str = option("dpo", "preference loss", choices=LOSSES)
    ref: str = option("precomputed", "reference log-probs: computed once and cached on disk, "
                      "or a live reference model scoring every batch",
                      choices=("precomputed", "live"))
    ref_model: str | None = option(None, "reference model folder (default: the initial policy)")
    max_length: int | None = option(None, "max tokens of prompt + response (default: 512, or "
                                    "the model's context when shorter; a larger value is "
                                    "capped at the context, with a warning)", min=2)
    truncation: str = option("drop", "fitting max_length: drop rows whose prompt fills it and "
                             "cut responses' ends (TRL's DPOTrainer), or keep_end: cut the "
                             "prompt's start to max_prompt_length, then responses' ends "
                             "(on-policy prompts always keep_end)",
                             choices=TRUNCATIONS)
    max_prompt_length: int | None = option(None, "max prompt tokens: longer prompts are "
                                           "dropped (drop) or keep their end (keep_end; "
                                           "default max_length/2, at most max_length-1)",
                                           min=1)
    chat_template: str | None = option(None, "chat template for conversational data when the "
                                       "tokenizer has none: a Jinja file or template text")
    gradient_checkpointing: bool = option(False, "recompute each block's activations in "
                                          "backward (less memory, about a third more compute)")
    selective_recompute: str = option("auto", "without gradient_checkpointing: keep only each "
                                      "block's matmul and attention outputs for backward and "
                                      "recompute its elementwise ops (norms, activations, "
                                      "rotary): same gradients, ~20-30 % less activation "
                                      "memory, a little more compute; auto = on when training "
                                      "on CPU (not yet timed on GPUs); models without per-block "
                                      "checkpointing are left as they are",
                                      choices=("auto", "on", "off"))
    lora_r: int = option(0, "LoRA rank (0 = train all weights)", min=0)
    lora_alpha: float = option(16.0, "LoRA alpha", gt=0)
    lora_dropout: float = option(0.0, "LoRA dropout", min=0, max=1)
    lora_targets: str | None = option(None, "comma-separated module names for LoRA "
                                      "(default: peft's choice for the architecture)")
    fused_head: bool = option(True, "score responses with the fused, response-only LM head")
    cache_dir: str | None = option(None, "folder of cached reference log-probs "
                                   "(default: OUT/ref_cache; none without an output folder)")

    def __post_init__(self) -> None:
        check_config(self)


#: ``max_length`` when none is given (and the model's context is not shorter).
DEFAULT_MAX_LENGTH = 512


def fit_context(model: torch.nn.Module, pref: PrefConfig, reserve: int = 0
                ) -> tuple[PrefConfig, int | None]:
    """``(pref, context)``: ``pref`` with ``max_length`` resolved and capped at the model's
    context (:func:`~descentlab.lm.tiny.context_length`) less ``reserve`` positions (tokens
    sampled on-policy): None becomes :data:`DEFAULT_MAX_LENGTH` or the room in the context
    if smaller; a larger explicit value is capped with a ``UserWarning`` saying so.
    ``context``: None when the model's config names none."""
    context = context_length(model)
    room = None if context is None else context - reserve
    if room is not None and room < 2:  # (an explicit max_length is at least 2)
        raise InputError(f"the model's context ({context} positions) leaves no room for a "
                         f"prompt besides {reserve} sampled tokens", where="max_new_tokens")
    if pref.max_length is None:
        length = DEFAULT_MAX_LENGTH if room is None else min(DEFAULT_MAX_LENGTH, room)
        pref = dataclasses.replace(pref, max_length=length)
    if room is None or pref.max_length <= room:
        return pref, context
    warnings.warn(f"max_length {pref.max_length} exceeds the model's context ({context} "
                  f"positions{f' less {reserve} sampled tokens' if reserve else ''}): using "
                  f"max_length {context - reserve}", UserWarning, stacklevel=3)
    return dataclasses.replace(pref, max_length=context - reserve), context


def resume_settings(pref: PrefConfig, params: LossParams, data: str, model: str,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resume must find unchanged, in the order it is compared (before the loop's
    own :func:`~descentlab.core.training.run_settings`): the loss and its parameters, the
    data's and the initial model's fingerprints, the rest of ``pref`` (not ``cache_dir``),
    then ``extra`` (the caller's: sampling, the tiny model's size…)."""
    out: dict[str, Any] = {"loss": pref.loss, **dataclasses.asdict(params), "data": data,
                           "model": model}
    out.update({k: v for k, v in dataclasses.asdict(pref).items()
                if k not in ("loss", "cache_dir")})
    out.update(extra or {})
    return out


def prepare_model(model: torch.nn.Module, tokenizer, cfg: PrefConfig,
                  device: torch.device | str | None = None) -> torch.nn.Module:
    """Apply the model-side options: the chat template, and what backward keeps of the
    forward (:mod:`descentlab.lm.recompute`): full gradient checkpointing (non-reentrant, so
    frozen inputs and LoRA need no ``enable_input_require_grads``), else selective
    recomputation of the elementwise ops (``selective_recompute``: ``on``, or ``auto`` when
    ``device`` — where training runs, default CPU — is a CPU; only when the model supports
    per-block checkpointing)."""
    if cfg.chat_template:
        set_chat_template(tokenizer, cfg.chat_template)
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise InputError(f"{type(model).__name__} does not support gradient checkpointing",
                             where="gradient_checkpointing")
        enable_checkpointing(model)
    elif cfg.selective_recompute == "on" or (cfg.selective_recompute == "auto" and torch.device(
            device if device is not None else "cpu").type == "cpu"):
        enable_selective_recompute(model)
    return model


def apply_lora(model: torch.nn.Module, cfg: PrefConfig) -> torch.nn.Module:
    """Wrap ``model`` with peft LoRA adapters when ``cfg.lora_r > 0`` (else unchanged)."""
    if cfg.lora_r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    targets = [t.strip() for t in cfg.lora_targets.split(",")] if cfg.lora_targets else None
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lcfg)
    except ValueError as e:
        raise InputError(f"LoRA: {str(e).splitlines()[0]}", where="lora_targets") from None


def split_logps(out, ref: torch.Tensor | None, B: int) -> Logps:
    """A :class:`Logps` from a concatenated (chosen rows, then rejected rows) result."""
    n = out.n_tokens
    return Logps(out.sum[:B], out.sum[B:], None if ref is None else ref[:B],
                 None if ref is None else ref[B:], n[:B], n[B:])


def make_loss_fn(loss: str, params: LossParams,
                 live_ref: Callable[[dict], torch.Tensor] | None = None) -> Callable:
    """``loss_fn(scorer, batch) -> (loss, metrics)`` for :func:`descentlab.core.training.train`.

    The batch's ``ref_logps (2B,)`` is used when present, else ``live_ref(batch)``, which
    runs before the policy's forward: its transient memory never adds to the activations
    the policy holds for backward.
    """
    def loss_fn(scorer, batch):
        B = batch["index"].numel()
        ref = batch.get("ref_logps")
        if ref is None and live_ref is not None:
            ref = live_ref(batch)
        out = scorer(batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        losses, metrics = preference_loss(loss, split_logps(out, ref, B), params)
        metrics["tokens"] = batch["attention_mask"].sum()
        for k, v in batch.items():
            if k.startswith(("oracle/", "sample/")):
                metrics[k] = v.float().mean()
        return losses.mean(), metrics
    return loss_fn


@dataclass
class PrefTrainResult(TrainResult):
    """:class:`TrainResult` whose ``model`` is the trained Hugging Face model (a peft model
    with LoRA), plus what fitting the data into ``max_length`` did (training and held-out
    pairs; ``max_length`` as used, after capping at the model's ``context``) and, on-policy,
    the sampling cost (generation tokens/s = ``sample_tokens / sample_seconds``; training
    alone takes ``seconds − sample_seconds``)."""

    max_length: int | None = None
    context: int | None = None      # the model's positions (None: its config names none)
    truncation: TruncationReport | None = None
    eval_truncation: TruncationReport | None = None
    sample_seconds: float = 0.0     # on-policy: wall time in generate() (this process)
    sample_tokens: int = 0          # on-policy: tokens sampled (this process)


def eval_metrics(policy: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, loss: str,
                 params: LossParams) -> dict[str, float]:
    """Held-out metrics from ``(N, 2)`` policy / reference log-probs and response lengths
    (chosen, rejected): the loss (``dpo_bg`` for an on-policy loss, whose surrogate needs
    samples from π) and its TRL-named metrics over all N pairs at once, plus
    ``logps_delta/chosen``, ``logps_delta/rejected`` (mean log π(y) − log π₀(y)) and
    ``logps_delta/margins`` (their difference's mean), and ``pairs``."""
    name = "dpo_bg" if LOSSES[loss].onpolicy else loss
    lp = Logps(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], lengths[:, 0], lengths[:, 1])
    losses, metrics = preference_loss(name, lp, params)
    dc, dr = policy[:, 0] - ref[:, 0], policy[:, 1] - ref[:, 1]
    out = {"loss": float(losses.mean()), **{k: float(v) for k, v in metrics.items()}}
    out.update({"logps_delta/chosen": float(dc.mean()), "logps_delta/rejected": float(dr.mean()),
                "logps_delta/margins": float((dc - dr).mean()), "pairs": float(len(policy))})
    return out


def make_eval_fn(pairs: TokenizedPairs, ref_logps: torch.Tensor, loss: str, params: LossParams,
                 pad_id: int, accelerator, batch_size: int) -> Callable[[Any, int], dict]:
    """``eval_fn(scorer, step)`` for the loop's eval hook: score every held-out pair (sharded
    over the processes and gathered, so every process returns the same numbers) and return
    :func:`eval_metrics` against the reference log-probs ``ref_logps (N, 2)``."""
    from accelerate.utils import gather_object

    def eval_fn(scorer, step: int) -> dict:
        mine = list(range(accelerator.process_index, len(pairs), accelerator.num_processes))
        rows = []
        for s in range(0, len(mine), batch_size):
            idx = mine[s:s + batch_size]
            b = collate_pairs(pairs, idx, pad_id)
            with torch.no_grad(), accelerator.autocast():
                out = scorer(b["input_ids"].to(accelerator.device),
                             b["attention_mask"].to(accelerator.device),
                             b["response_mask"].to(accelerator.device))
            B = len(idx)
            rows.append((idx, torch.stack([out.sum[:B], out.sum[B:]], 1).float().cpu(),
                         torch.stack([out.n_tokens[:B], out.n_tokens[B:]], 1).cpu()))
        parts = gather_object(rows) if accelerator.num_processes > 1 else rows
        policy, lengths = torch.zeros(len(pairs), 2), torch.zeros(len(pairs), 2, dtype=torch.long)
        for idx, lp, n in parts:
            policy[torch.tensor(idx)] = lp
            lengths[torch.tensor(idx)] = n
        return eval_metrics(policy, ref_logps, lengths, loss, params)
    return eval_fn


def held_out_eval(model, tokenizer, eval_rows: list[dict] | None, *, pref: PrefConfig,
                  params: LossParams, train_cfg: TrainConfig,
                  out_dir: str | os.PathLike | None, accelerator, ref_model=None,
                  source: Any = None, fingerprint: str | None = None):
    """``(eval_fn, report)`` for held-out pairs (``(None, None)`` without rows): the pairs are
    tokenized like the training data and their reference log-probs cached (under the
    reference: ``ref_model``, else ``model`` as it is now, i.e. the initial policy, whose
    ``fingerprint`` the caller may pass), so the eval's log-prob deltas measure the change
    since the start."""
    if not eval_rows:
        return None, None
    pairs = tokenize_pairs(eval_rows, tokenizer, max_length=pref.max_length,
                           max_prompt_length=pref.max_prompt_length, truncation=pref.truncation)
    ref = cached_reference_logps(
        ref_model if ref_model is not None else model, pairs, tokenizer.pad_token_id,
        accelerator=accelerator, source=pref.ref_model if ref_model is not None else source,
        cache_dir=reference_cache(pref, out_dir), batch_size=2 * train_cfg.batch_size,
        fused=pref.fused_head, fingerprint=None if ref_model is not None else fingerprint)
    return (make_eval_fn(pairs, ref, pref.loss, params, tokenizer.pad_token_id, accelerator,
                         2 * train_cfg.batch_size), pairs.truncation)


def check_and_evaluate(model, tokenizer, *, pref: PrefConfig, params: LossParams,
                       data_fingerprint: str, settings: dict | None, train_cfg, out_dir,
                       resume: bool, extend: bool, accelerator, eval_rows, ref_model,
                       model_source):
    """Before any work: refuse a resume with changed settings, then set up the held-out
    evaluation. Shared by the offline and on-policy trainers. -> (model fingerprint or
    None, the resume settings, eval_fn, eval_report)."""
    fp = model_fingerprint(model, model_source) if out_dir is not None else None
    every = resume_settings(pref, params, data_fingerprint, fp or "", settings)
    if resume:
        check_resume(out_dir, run_settings(train_cfg, accelerator, every), extend=extend)
    eval_fn, eval_report = held_out_eval(
        model, tokenizer, eval_rows, pref=pref, params=params, train_cfg=train_cfg,
        out_dir=out_dir, accelerator=accelerator, ref_model=ref_model, source=model_source,
        fingerprint=fp)
    return fp, every, eval_fn, eval_report


def train_offline(model, tokenizer, rows: list[dict], *, pref: PrefConfig, params: LossParams,
                  train_cfg: TrainConfig, out_dir: str | os.PathLike | None, accelerator,
                  ref_model=None, model_source: Any = None, resume: bool = False,
                  extend: bool = False, settings: dict[str, Any] | None = None,
                  stop_at_step: int | None = None, on_step: Callable | None = None,
                  eval_rows: list[dict] | None = None) -> PrefTrainResult:
    """Train ``model`` on preference ``rows``; returns a :class:`PrefTrainResult`.

    ``ref_model``: a separate reference (default: the initial ``model``); ``model_source``:
    the folder / file the model was loaded from (its fingerprint, for the reference cache
    and resume). ``eval_rows``: held-out pairs scored on the loop's eval schedule
    (``train_cfg.eval_every`` and the last step; logged as ``eval/…``, see
    :func:`eval_metrics`). ``resume``/``extend``: continue the checkpoint in ``out_dir``,
    checked against :func:`resume_settings` (with the caller's ``settings``) before any
    reference log-prob is computed. ``max_length`` is capped at the model's context.
    """
    if LOSSES[pref.loss].onpolicy:
        raise InputError(f"loss {pref.loss!r} samples from the policy: train it on-policy",
                         where="loss")
    model = prepare_model(model, tokenizer, pref, accelerator.device)
    pref, context = fit_context(model, pref)
    pairs = tokenize_pairs(rows, tokenizer, max_length=pref.max_length,
                           max_prompt_length=pref.max_prompt_length, truncation=pref.truncation)
    pad_id = tokenizer.pad_token_id
    fp, every, eval_fn, eval_report = check_and_evaluate(
        model, tokenizer, pref=pref, params=params, data_fingerprint=pairs.fingerprint(),
        settings=settings, train_cfg=train_cfg, out_dir=out_dir, resume=resume, extend=extend,
        accelerator=accelerator, eval_rows=eval_rows, ref_model=ref_model,
        model_source=model_source)
    ref_logps, live_ref = None, None
    if needs_reference(pref.loss, params):
        if pref.ref == "precomputed":
            ref_logps = cached_reference_logps(
                ref_model if ref_model is not None else model, pairs, pad_id,
                accelerator=accelerator, source=model_source if ref_model is None else
                pref.ref_model, cache_dir=reference_cache(pref, out_dir),
                batch_size=2 * train_cfg.batch_size, fused=pref.fused_head,
                fingerprint=fp if ref_model is None else None)
            ref_model = None                       # not held during training
    model = apply_lora(model, pref)
    if ref_logps is None and needs_reference(pref.loss, params):
        live_ref = reference_scorer(model, ref_model, pref.fused_head, accelerator.device,
                                    accelerator.autocast)
    scorer = SequenceScorer(model, pref.fused_head)
    batch_fn = indexed_batches(len(pairs), lambda idx: collate_pairs(pairs, idx, pad_id, ref_logps))
    res = train(scorer, make_loss_fn(pref.loss, params, live_ref), batch_fn, train_cfg, out_dir,
                resume=resume, extend=extend, settings=every, accelerator=accelerator,
                stop_at_step=stop_at_step, desc=f"prefopt {pref.loss}", on_step=on_step,
                eval_fn=eval_fn)
    return PrefTrainResult(**{**vars(res), "model": res.model.model}, max_length=pref.max_length,
                           context=context, truncation=pairs.truncation,
                           eval_truncation=eval_report)
