"""Per-sequence log-probabilities of a response under any ``AutoModelForCausalLM``.

log π(y | x) = Σ_{t ∈ response} log softmax(W h_{t-1})[y_t]

The model sees ``input_ids`` (prompt and response concatenated, padded on either side);
``response_mask`` marks the tokens whose probability counts. Two routes, same numbers:

* :class:`SequenceScorer` (the trainers' route; an ``nn.Module`` so DDP wraps it): runs the
  backbone, gathers the hidden states of the scored positions only ``(N, H)`` and applies
  the LM head through :class:`_FusedHeadLogProb`, which computes ``W h`` one row-chunk at a
  time, keeps only ``logit[label] − logsumexp`` and recomputes the chunk in backward: no
  ``(B, T, V)`` logits and no full-vocabulary log-softmax are ever materialised, and no LM
  head work is spent on prompt or padding positions. Used when the model exposes a plain
  linear LM head (``get_output_embeddings``) and a backbone (``base_model``) and applies no
  logit scaling / soft-capping; otherwise it falls back to the second route.
* :func:`sequence_logps`: the model's own forward with ``logits_to_keep`` (LM head only
  from the first scored position on), then :class:`_TokenLogProb` — ``logit[label] −
  logsumexp(logits)`` in float32 one sequence chunk at a time, softmax recomputed chunk by
  chunk in backward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import NamedTuple

import torch
from torch import Tensor

# Elements of float32 scratch per chunk in the token log-prob (64 MiB).
CHUNK_ELEMENTS = 1 << 24


class SequenceLogps(NamedTuple):
    """Per-sequence results, all shaped ``(B,)`` (float32 except ``n_tokens``)."""

    sum: Tensor       # Σ_t log π(y_t | ·) over response tokens
    mean: Tensor      # sum / n_tokens (0 where a row has no response token)
    n_tokens: Tensor  # response tokens per row (long)


def _chunk_len(rows: int, length: int, vocab: int) -> int:
    return max(1, min(length, CHUNK_ELEMENTS // max(1, rows * vocab)))


class _TokenLogProb(torch.autograd.Function):
    """``logits (B, L, V)``, ``labels (B, L)`` -> ``log softmax(logits)[labels]`` ``(B, L)`` fp32.

    Saves only the logits (in their own dtype) and the float32 logsumexp ``(B, L)``; the
    backward ``∂/∂logits = g · (onehot(label) − softmax)`` is formed chunk by chunk.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        B, L, V = logits.shape
        step = _chunk_len(B, L, V)
        acc = torch.promote_types(logits.dtype, torch.float32)        # fp32, or fp64 if given
        out = torch.empty(B, L, dtype=acc, device=logits.device)
        lse = torch.empty_like(out)
        for s in range(0, L, step):
            chunk = logits[:, s:s + step].to(acc)                     # (B, l, V)
            lse[:, s:s + step] = chunk.logsumexp(-1)
            picked = chunk.gather(-1, labels[:, s:s + step, None]).squeeze(-1)  # (B, l)
            out[:, s:s + step] = picked - lse[:, s:s + step]
        ctx.save_for_backward(logits, labels, lse)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, labels, lse = ctx.saved_tensors
        B, L, V = logits.shape
        step = _chunk_len(B, L, V)
        grad_logits = torch.empty_like(logits)
        for s in range(0, L, step):
            g = grad[:, s:s + step].to(lse.dtype)                      # (B, l)
            soft = (logits[:, s:s + step].to(lse.dtype) - lse[:, s:s + step, None]).exp_()
            soft.mul_(-g[..., None])                                   # −g·softmax, (B, l, V)
            soft.scatter_add_(-1, labels[:, s:s + step, None], g[..., None])
            grad_logits[:, s:s + step] = soft.to(logits.dtype)
        return grad_logits, None


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """``log softmax(logits)[..., label]`` in float32 (float64 for float64 logits), ``labels.shape``.

    ``logits (B, L, V)`` in any float dtype, ``labels (B, L)`` valid ids (mask pads yourself).
    """
    return _TokenLogProb.apply(logits, labels)


def masked_sums(token_logps: Tensor, mask: Tensor) -> SequenceLogps:
    """Sum / mean / count over ``mask`` of ``token_logps``; both ``(B, L)``.

    Masked-out entries are selected away (``where``), so a non-finite value there cannot leak.
    """
    mask = mask.bool()
    total = torch.where(mask, token_logps, torch.zeros_like(token_logps)).sum(-1)
    n = mask.sum(-1)
    return SequenceLogps(total, total / n.clamp(min=1).to(total.dtype), n)


def _base_forward(model: torch.nn.Module):
    """The forward of the innermost model (through DDP's ``.module`` and peft wrappers)."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            break
    return type(model).forward


@functools.lru_cache(maxsize=64)
def _forward_params(forward) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions ``0, 1, ...`` counted over real tokens only, so left padding is harmless."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class _FusedHeadLogProb(torch.autograd.Function):
    """``hidden (N, H)``, ``weight (V, H)``, ``bias (V,)|None``, ``labels (N,)`` ->
    ``log softmax(hidden Wᵀ + b)[labels]`` ``(N,)`` in float32 (float64 for float64 input),
    without ``(N, V)`` logits.

    Forward and backward run over row chunks of ``CHUNK_ELEMENTS / V`` rows; the backward
    recomputes each chunk's logits, forms ``g · (onehot − softmax)`` in place and
    accumulates ``∂hidden`` and ``∂W`` (float32 accumulators). Matmuls run in the autocast
    dtype when autocast is on, else in the hidden states' dtype.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None,  # type: ignore[override]
                labels: Tensor) -> Tensor:
        dev = hidden.device.type
        cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
        N, V = hidden.shape[0], weight.shape[0]
        step = max(1, CHUNK_ELEMENTS // V)
        w = weight.to(cdt)
        b = bias.to(cdt) if bias is not None else None
        acc = torch.promote_types(cdt, torch.float32)                    # fp32 (fp64 if given)
        out = torch.empty(N, dtype=acc, device=hidden.device)
        lse = torch.empty_like(out)
        for s in range(0, N, step):
            logits = hidden[s:s + step].to(cdt) @ w.t()                  # (n, V)
            if b is not None:
                logits += b
            logits = logits.to(acc)
            lse[s:s + step] = logits.logsumexp(-1)
            out[s:s + step] = logits.gather(-1, labels[s:s + step, None]).squeeze(-1) - lse[s:s + step]
        ctx.save_for_backward(hidden, weight, bias, labels, lse)
        ctx.cdt = cdt
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        hidden, weight, bias, labels, lse = ctx.saved_tensors
        cdt = ctx.cdt
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        N, V = hidden.shape[0], weight.shape[0]
        step = max(1, CHUNK_ELEMENTS // V)
        w = weight.to(cdt)
        b = bias.to(cdt) if bias is not None else None
        g_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        acc = lse.dtype
        g_w = None       # float32 accumulator, created by the first chunk's product
        g_b = torch.zeros(V, dtype=acc, device=weight.device) if need_b else None
        grad = grad.to(acc)
        for s in range(0, N, step):
            h = hidden[s:s + step].to(cdt)                                 # (n, H)
            d = h @ w.t()                                                  # (n, V) logits
            if b is not None:
                d += b
            d = d.to(acc).sub_(lse[s:s + step, None]).exp_()               # softmax
            g = grad[s:s + step]
            d.mul_(-g[:, None]).scatter_add_(-1, labels[s:s + step, None], g[:, None])
            dc = d.to(cdt)                                                 # ∂ℓ/∂logits, (n, V)
            if g_h is not None:
                g_h[s:s + step] = (dc @ w).to(hidden.dtype)
            if need_w:     # accumulate in place: no (V, H) temporary when cdt is float32
                if g_w is None:
                    g_w = (dc.t() @ h).to(acc)
                elif dc.dtype == acc:
                    g_w.addmm_(dc.t(), h)
                else:
                    g_w.add_((dc.t() @ h).to(acc))
            if g_b is not None:
                g_b.add_(d.sum(0))
        if need_w and g_w is None:                                         # N == 0
            g_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        return (g_h, g_w.to(weight.dtype) if g_w is not None else None,
                g_b.to(bias.dtype) if g_b is not None else None, None)


def fused_head_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None,
                        labels: Tensor) -> Tensor:
    """``log softmax(hidden Wᵀ + b)[labels]``: ``hidden (N, H)``, ``labels (N,)`` -> ``(N,)``."""
    return _FusedHeadLogProb.apply(hidden, weight, bias, labels)


_SCALING_ATTRS = ("final_logit_softcapping", "logit_scale", "output_multiplier",
                  "lm_head_multiplier", "logits_scaling")


def _unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def split_lm_head(model: torch.nn.Module):
    """``(backbone, head)`` of a causal LM whose logits are exactly ``head(backbone(x))``.

    None when the model has no separate backbone (or one that takes no ``position_ids``),
    its head is not a plain ``nn.Linear`` (e.g. LoRA on the head) or its config scales /
    soft-caps the logits.
    """
    hf = _unwrap_peft(model)
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    backbone = getattr(hf, "base_model", None)
    if type(head) is not torch.nn.Linear or backbone is None or backbone is hf:
        return None
    if "position_ids" not in _forward_params(type(backbone).forward):
        return None
    cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    for attr in _SCALING_ATTRS:
        if getattr(cfg, attr, None) not in (None, 1, 1.0):
            return None
    return backbone, head


def no_cudnn_attention() -> contextlib.AbstractContextManager:
    """A context in which ``scaled_dot_product_attention`` may use the flash, memory-efficient
    and math kernels but not cuDNN's.

    Why: with torch 2.11 on an H200, no-grad forwards (a live reference model) picked the
    cuDNN kernel, which builds a new execution plan for every new padded length: about
    500 ms per new shape against 14 ms per forward (each reference call timed inside the
    trainer, ``benchmarks/prefopt_vs_trl.py``'s large config; the training forward, with
    gradients, did not pay it). Token-by-token generation meets a new length at every step.
    The other kernels have no per-shape set-up.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no cuDNN attention either
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH])


class SequenceScorer(torch.nn.Module):
    """Wraps a causal LM; ``forward(input_ids, attention_mask, response_mask)`` ->
    :class:`SequenceLogps` ``(B,)``. Train / DDP-wrap this module: its parameters are the
    model's (state-dict keys prefixed ``model.``).

    ``fused=True`` (default) uses the backbone + :func:`fused_head_logprobs` route when
    :func:`split_lm_head` allows it, else :func:`sequence_logps`.
    """

    def __init__(self, model: torch.nn.Module, fused: bool = True):
        super().__init__()
        self.model = model
        self.fused = fused

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                response_mask: Tensor) -> SequenceLogps:
        with no_cudnn_attention():
            return self._score(input_ids, attention_mask, response_mask)

    def _score(self, input_ids: Tensor, attention_mask: Tensor,
               response_mask: Tensor) -> SequenceLogps:
        parts = split_lm_head(self.model) if self.fused else None
        if parts is None:
            return sequence_logps(self.model, input_ids, attention_mask, response_mask)
        backbone, head = parts
        label_mask = response_mask[:, 1:].bool() & attention_mask[:, 1:].bool()  # (B, T-1)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids_from_mask(attention_mask),
                          use_cache=False).last_hidden_state[:, :-1]         # (B, T-1, H)
        rows = label_mask.nonzero()[:, 0]                                    # (N,)
        lp = fused_head_logprobs(hidden[label_mask], head.weight, head.bias,
                                 input_ids[:, 1:][label_mask])               # (N,)
        total = torch.zeros(input_ids.shape[0], dtype=lp.dtype, device=lp.device)
        total = total.index_add(0, rows, lp)
        n = label_mask.sum(-1)
        return SequenceLogps(total, total / n.clamp(min=1).to(total.dtype), n)


def sequence_logps(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor,
                   response_mask: Tensor, *, use_logits_to_keep: bool = True) -> SequenceLogps:
    """log π(response | prompt) per row of a padded batch.

    Args:
        model: a causal LM (``AutoModelForCausalLM``, possibly wrapped by peft or DDP).
        input_ids: ``(B, T)`` prompt + response tokens, padded left or right.
        attention_mask: ``(B, T)``, 1 on real tokens.
        response_mask: ``(B, T)``, True on the tokens to score (column 0 is never scored: it
            has no predecessor).
        use_logits_to_keep: let the LM head skip the positions before the first scored token
            (when the model's forward takes ``logits_to_keep``).

    Returns: :class:`SequenceLogps` of shape ``(B,)`` each, differentiable w.r.t. the model.
    """
    B, T = input_ids.shape
    labels = input_ids[:, 1:]                                          # (B, T-1)
    label_mask = response_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    any_col = label_mask.any(0)
    first = int(any_col.float().argmax()) if bool(any_col.any()) else T - 2
    params = _forward_params(_base_forward(model))
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if "position_ids" in params:
        kwargs["position_ids"] = position_ids_from_mask(attention_mask)
    keep_from = 0
    if use_logits_to_keep and "logits_to_keep" in params and first > 0:
        kwargs["logits_to_keep"] = T - first   # logits at positions first .. T-1
        keep_from = first
    logits = model(**kwargs).logits                                    # (B, T-keep_from, V)
    logits = logits[:, : T - 1 - keep_from]                            # drop the last position
    lp = token_logprobs(logits, labels[:, keep_from:])                 # (B, T-1-keep_from)
    return masked_sums(lp, label_mask[:, keep_from:])


def collate_sequences(prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      padding_side: str = "right") -> dict[str, Tensor]:
    """``input_ids``, ``attention_mask`` (long) and ``response_mask`` (bool), all ``(N, T)``,
    for ``N`` prompt+response sequences padded to the longest."""
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    N, T = len(lengths), max(lengths)
    ids = torch.full((N, T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, T), dtype=torch.long)
    resp = torch.zeros((N, T), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        L = len(p) + len(r)
        o = T - L if padding_side == "left" else 0
        ids[i, o:o + L] = torch.tensor(p + r, dtype=torch.long)
        attn[i, o:o + L] = 1
        resp[i, o + len(p):o + L] = True
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}
