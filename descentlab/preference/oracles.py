"""Preference oracles for on-policy training: reward functions, reward models, labels.

A *reward* maps ``(prompts, responses)`` (two lists of ``n`` strings) to ``n`` floats. It is
named by a spec: ``module:function`` (any importable Python function with that signature,
e.g. ``descentlab.preference.oracles:good_words``) or a local folder holding an
``AutoModelForSequenceClassification`` reward model (score = logit 0 of prompt+response).
A *labeler* turns the rewards ``r, r'`` of two samples into which one is preferred:
``deterministic`` (higher reward wins, ties broken by a fair coin) or ``bt`` (Bradley–Terry:
y ≻ y' with probability σ((r − r')/τ)).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from descentlab.core.errors import InputError

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]

# Built-in toy rewards (also the demo's) --------------------------------------------------

_GOOD = frozenset(("bright", "kind", "clear", "warm", "calm", "gentle", "honest", "brave"))
_BAD = frozenset(("dull", "rude", "murky", "cold", "loud", "harsh", "sly", "timid"))


def good_words(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """(#good words − #bad words) / max(1, #words) of each response (the synthetic data's
    vocabulary, :data:`descentlab.preference.data.GOOD_WORDS` / ``BAD_WORDS``); in [−1, 1]."""
    out = []
    for r in responses:
        words = r.split()
        out.append((sum(w in _GOOD for w in words) - sum(w in _BAD for w in words))
                   / max(1, len(words)))
    return out


def length(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """Number of whitespace-separated words (a reward that pure length hacking maximises)."""
    return [float(len(r.split())) for r in responses]


def brevity(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """Minus the number of words (prefers short responses)."""
    return [-float(len(r.split())) for r in responses]


class RewardModel:
    """A local ``AutoModelForSequenceClassification``; reward = logit 0 of prompt+response."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification

        from descentlab.lm.tiny import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                Path(path), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise InputError(f"cannot load a reward model: {str(e).splitlines()[0]}",
                             where=path) from None
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        texts = [p + r for p, r in zip(prompts, responses)]
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[s:s + self.batch_size], return_tensors="pt",
                                 padding=True, truncation=True).to(self.device)
            out += self.model(**enc).logits[:, 0].float().tolist()
        return out


def _takes_two_lists(fn: Callable) -> bool | None:
    """Whether ``fn(prompts, responses)`` binds (None when Python cannot tell: a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(["prompt"], ["response"])
    except TypeError:
        return False
    return True


def load_reward(spec: str, device: torch.device | str = "cpu") -> RewardFn:
    """A reward from ``module:function`` or a reward-model folder; a bad spec (not
    importable, not callable, not callable as ``fn(prompts, responses)``) -> InputError
    (``where="reward"``), before any work."""
    if Path(spec).is_dir():
        return RewardModel(spec, device)
    if ":" not in spec:
        raise InputError(f"expected module:function or a reward-model folder, got {spec!r}",
                         where="reward")
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise InputError(f"cannot import {spec!r}: {e}", where="reward") from None
    if not callable(fn):
        raise InputError(f"{spec!r} is not callable", where="reward")
    if _takes_two_lists(fn) is False:
        raise InputError(f"{spec!r} cannot be called as fn(prompts, responses) "
                         f"(its signature is {inspect.signature(fn)})", where="reward")
    return fn


def score(reward: RewardFn, prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
    """``(n,)`` float32 rewards; a reward that raises a TypeError/ValueError, returns a
    wrong count or a non-finite or non-numeric value is an InputError (``where="reward"``)."""
    try:
        r = torch.as_tensor(list(reward(prompts, responses)), dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"the reward failed on {len(responses)} responses: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         where="reward") from None
    if r.shape != (len(responses),):
        raise InputError(f"reward returned {tuple(r.shape)} values for {len(responses)} "
                         "responses", where="reward")
    if not torch.isfinite(r).all():
        raise InputError("reward returned a non-finite value", where="reward")
    return r


def check_reward(reward: RewardFn, prompt: str = "") -> None:
    """Call ``reward`` once on ``([prompt], ["probe"])`` (before any work): a reward that
    cannot score is an InputError now, not after minutes of training."""
    score(reward, [prompt], ["probe"])


# Labelers: (r_a (B,), r_b (B,), temperature, generator) -> a_wins (B,) bool ---------------

def _deterministic(ra: Tensor, rb: Tensor, temperature: float,
                   gen: torch.Generator) -> Tensor:
    coin = torch.rand(ra.shape, generator=gen) < 0.5
    return torch.where(ra == rb, coin, ra > rb)


def _bradley_terry(ra: Tensor, rb: Tensor, temperature: float,
                   gen: torch.Generator) -> Tensor:
    p = torch.sigmoid((ra - rb) / temperature)
    return torch.rand(ra.shape, generator=gen) < p


LABELERS: dict[str, Callable[[Tensor, Tensor, float, torch.Generator], Tensor]] = {
    "deterministic": _deterministic,
    "bt": _bradley_terry,
}


def label(ra: Tensor, rb: Tensor, mode: str = "deterministic", temperature: float = 1.0,
          generator: torch.Generator | None = None) -> Tensor:
    """``(B,)`` bool: True where sample a is preferred over sample b."""
    if mode not in LABELERS:
        raise InputError(f"unknown labeler {mode!r}; choose from {', '.join(LABELERS)}",
                         where="labels")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return LABELERS[mode](ra.float().cpu(), rb.float().cpu(), temperature, gen)
