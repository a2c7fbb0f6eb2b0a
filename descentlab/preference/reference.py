"""Reference log-probs (SPEC D: log π₀(y) of the frozen reference): precomputed once and
cached on disk, or scored live every batch.

``ref="precomputed"`` (the default): :func:`cached_reference_logps` computes the ``(N, 2)``
log-probs before training (sharded over the processes) and caches them under a key of
(reference model, tokenized data, precision, head route), so the reference model is never
held in memory during training and a rerun or a resume reuses the file. ``ref="live"``:
:func:`reference_scorer` keeps a frozen reference (or, with LoRA, the base model with
adapters disabled) and scores every batch with it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from descentlab.core.io import atomic_write
from descentlab.core.progress import progress
from descentlab.core.training import state_fingerprint
from descentlab.lm.logprobs import SequenceScorer
from descentlab.preference.data import TokenizedPairs, collate_pairs


def model_fingerprint(model: torch.nn.Module, source: str | os.PathLike | None = None) -> str:
    """Identity of a reference model for the cache key.

    A local folder: its resolved path and its files' sizes and mtimes (no hashing of GBs); a
    file (``.gguf``): its resolved path, size and mtime. An in-memory model (``tiny``): sha256
    of every parameter and buffer.
    """
    h = hashlib.sha256()
    if source is not None and Path(source).is_file():
        st = Path(source).stat()
        h.update(f"{Path(source).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    elif source is not None and Path(source).is_dir():
        root = Path(source).resolve()
        h.update(str(root).encode())
        for f in sorted(root.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        return state_fingerprint(model)
    return h.hexdigest()


@torch.no_grad()
def compute_reference_logps(scorer: SequenceScorer, pairs: TokenizedPairs, indices: list[int],
                            pad_id: int, device: torch.device, batch_size: int = 16,
                            autocast: Callable | None = None,
                            desc: str = "reference") -> torch.Tensor:
    """``(len(indices), 2)`` float32 sequence log-probs (chosen, rejected), eval mode.

    ``autocast``: a factory of the autocast context (e.g. ``accelerator.autocast``).
    """
    was_training = scorer.training
    scorer.eval()
    out = []
    autocast = autocast or contextlib.nullcontext
    for s in progress(range(0, len(indices), batch_size), desc=desc):
        idx = indices[s:s + batch_size]
        b = collate_pairs(pairs, idx, pad_id)
        with autocast():
            lp = scorer(b["input_ids"].to(device), b["attention_mask"].to(device),
                        b["response_mask"].to(device)).sum.float().cpu()
        out.append(torch.stack([lp[:len(idx)], lp[len(idx):]], 1))    # (b, 2)
    scorer.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 2)


def cached_reference_logps(ref_model: torch.nn.Module, pairs: TokenizedPairs, pad_id: int, *,
                           accelerator, cache_dir: str | os.PathLike | None,
                           source: Any = None, batch_size: int = 16, fused: bool = True,
                           fingerprint: str | None = None) -> torch.Tensor:
    """``(N, 2)`` reference log-probs: read from the cache or computed (sharded over the
    processes, gathered) and written atomically by the main process (``cache_dir=None``:
    computed, not cached).

    Key: sha256 of (model fingerprint — ``fingerprint`` when the caller has it —, token-id
    fingerprint, precision, head route).
    """
    from accelerate.utils import broadcast_object_list, gather_object

    key = [None]
    if cache_dir is not None and accelerator.is_main_process:
        key[0] = hashlib.sha256("|".join([
            fingerprint or model_fingerprint(ref_model, source), pairs.fingerprint(),
            str(accelerator.mixed_precision), str(next(ref_model.parameters()).dtype),
            "fused" if fused else "logits"]).encode()).hexdigest()
    if cache_dir is not None and accelerator.num_processes > 1:
        broadcast_object_list(key, from_process=0)
    path = Path(cache_dir) / f"ref-{key[0][:20]}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key[0] and saved["logps"].shape == (len(pairs), 2):
            return saved["logps"]
    device = accelerator.device
    ref_model.to(device)
    mine = list(range(accelerator.process_index, len(pairs), accelerator.num_processes))
    lp = compute_reference_logps(SequenceScorer(ref_model, fused), pairs, mine, pad_id, device,
                                 batch_size, accelerator.autocast)
    parts = gather_object([(mine, lp)]) if accelerator.num_processes > 1 else [(mine, lp)]
    full = torch.zeros(len(pairs), 2)
    for idx, vals in parts:
        full[torch.tensor(idx, dtype=torch.long)] = vals
    if path is not None and accelerator.is_main_process:
        with atomic_write(path, "wb") as f:
            torch.save({"key": key[0], "logps": full}, f)
    accelerator.wait_for_everyone()
    return full


def reference_scorer(model: torch.nn.Module, ref_model: torch.nn.Module | None,
                     fused: bool, device: torch.device,
                     autocast: Callable) -> Callable[[dict], torch.Tensor]:
    """``live_ref(batch) -> (2B,)`` under no_grad: a frozen copy / the given reference, or the
    base model with adapters disabled when ``model`` is a peft model. ``autocast``: a factory
    of the autocast context."""
    if ref_model is None and hasattr(model, "disable_adapter"):
        scorer = SequenceScorer(model, fused)

        def live(batch):
            with torch.no_grad(), model.disable_adapter(), autocast():
                return scorer(batch["input_ids"], batch["attention_mask"],
                              batch["response_mask"]).sum.float()
        return live
    ref = ref_model if ref_model is not None else copy.deepcopy(model)
    ref = ref.to(device).eval().requires_grad_(False)
    scorer = SequenceScorer(ref, fused)

    def live(batch):
        with torch.no_grad(), autocast():
            return scorer(batch["input_ids"], batch["attention_mask"],
                          batch["response_mask"]).sum.float()
    return live


def reference_cache(pref: Any, out_dir: str | os.PathLike | None) -> Path | None:
    """Where reference log-probs are cached: ``pref.cache_dir``, else ``OUT/ref_cache``,
    else (no output folder) nowhere."""
    if pref.cache_dir:
        return Path(pref.cache_dir)
    return Path(out_dir) / "ref_cache" if out_dir is not None else None


