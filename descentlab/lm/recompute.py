"""Selective activation recomputation: keep the matmul and attention outputs of each block,
recompute its elementwise ops (norms, activation functions, rotary embeddings, GQA
expansion, residual scaling) in backward.

Why: in a decoder block much of what autograd saves for backward is elementwise
intermediates, not matmul outputs: RMSNorm's float32 intermediates, SiLU's output, the
SwiGLU product, the rotary copies of q and k, the GQA-expanded k / v. They are recomputed
here from the kept matmul outputs, without re-running any matmul (SmolLM2-135M on CPU,
batch 4 pairs: ≈ 700 MB off a 3.7 GB training peak for ≈ 15-20 % more forward + backward
time; ``docs/experiments/preference.md`` §4). Gradients are those of the plain backward
(the same ops on the same inputs: bitwise on CPU).

Built on ``torch.utils.checkpoint``'s selective checkpointing (``context_fn``) and the
model's own per-block checkpointing (Hugging Face ``GradientCheckpointingLayer``): a model
that does not support gradient checkpointing is left as it is. Like full checkpointing it
only acts in training mode with gradients on; ``eval()`` and ``no_grad`` forwards
(reference scoring, ``generate``) run the blocks unchanged, KV cache included.
"""

from __future__ import annotations

import functools

import torch

#: Ops whose outputs are kept (everything else in a block is recomputed in backward).
SAVED_OPS: tuple[str, ...] = (
    "mm", "addmm", "bmm", "baddbmm", "convolution", "_scaled_mm",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward", "_efficient_attention_forward",
)


@functools.lru_cache(maxsize=1)
def _saved_ops() -> frozenset:
    aten = torch.ops.aten
    return frozenset(getattr(aten, name).default for name in SAVED_OPS
                     if hasattr(aten, name) and hasattr(getattr(aten, name), "default"))


def _policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _saved_ops() else CheckpointPolicy.PREFER_RECOMPUTE


def selective_context():
    """``context_fn`` for ``torch.utils.checkpoint.checkpoint``: save :data:`SAVED_OPS`'
    outputs, recompute the rest."""
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_policy)


def _enable(model: torch.nn.Module, kwargs: dict) -> None:
    # transformers >= 5 names it activation_checkpointing_enable (the old name warns)
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Full (non-reentrant) per-block checkpointing: each block's forward is re-run in
    backward; only its input is kept."""
    _enable(model, {"use_reentrant": False})
    model._descentlab_recompute = "full"


def enable_selective_recompute(model: torch.nn.Module) -> bool:
    """Turn on selective recomputation in every block of ``model``; False (model unchanged)
    when the model does not support per-block checkpointing."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return False
    try:
        from torch.utils.checkpoint import create_selective_checkpoint_contexts  # noqa: F401
    except ImportError:      # torch < 2.4
        return False
    _enable(model, {"use_reentrant": False, "context_fn": selective_context})
    model._descentlab_recompute = "selective"
    return True


def recompute_mode(model: torch.nn.Module) -> str:
    """``"full"``, ``"selective"`` or ``"none"``: what :func:`enable_checkpointing` /
    :func:`enable_selective_recompute` set on ``model``."""
    return getattr(model, "_descentlab_recompute", "none")
