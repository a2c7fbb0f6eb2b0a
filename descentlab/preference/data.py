"""Preference data in TRL's format: load, validate, tokenize once, collate.

A row is ``{"prompt": P, "chosen": C, "rejected": R}`` where all three are plain strings, or
all three are conversations (lists of ``{"role", "content"}`` messages; the prompt ends
before the assistant turn). Sources: a JSONL file (row = line number) or a folder written
by ``datasets.Dataset.save_to_disk`` (a DatasetDict uses its ``train`` split; row = index
from 1). A bad row raises :class:`InputError` naming file, row and field.

Tokenization follows TRL's ``DPOTrainer`` exactly, so both see the same tokens: plain text
gets the eos token appended to each response, the prompt and prompt+response are
tokenized, and the response starts where the two diverge; conversations go through the
tokenizer's chat template (prompt with the generation prompt). Collation concatenates the
chosen rows then the rejected rows into one batch (one forward for both).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from descentlab.core.errors import InputError
from descentlab.core.io import read_jsonl

FIELDS = ("prompt", "chosen", "rejected")


def _check_messages(value: Any, field: str, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise InputError(f"field {field!r} must be a non-empty list of messages", where=where)
    for k, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise InputError(f"field {field!r}, message {k}: expected {{'role': str, "
                             f"'content': str}}", where=where)


def validate_row(row: Any, where: str, *, require_responses: bool = True) -> dict:
    """Check one row; returns ``{prompt, chosen?, rejected?}``. ``where`` = ``file row N``."""
    if not isinstance(row, dict):
        raise InputError("expected an object with prompt/chosen/rejected", where=where)
    fields = FIELDS if require_responses else ("prompt",)
    for f in fields:
        if f not in row or row[f] is None:
            raise InputError(f"missing field {f!r}", where=where)
    conversational = isinstance(row["prompt"], list)
    out = {}
    for f in FIELDS:
        if f not in row or row[f] is None:
            continue
        v = row[f]
        if conversational:
            _check_messages(v, f, where)
        elif not isinstance(v, str):
            kind = "a list of messages" if isinstance(v, list) else type(v).__name__
            raise InputError(f"field {f!r} must be a string like 'prompt', got {kind}",
                             where=where)
        out[f] = v
    if not conversational and not out["prompt"].strip():
        raise InputError("field 'prompt' is empty", where=where)
    return out


def load_rows(path: str | os.PathLike, *, require_responses: bool = True) -> list[dict]:
    """Validated rows from a JSONL file or a ``save_to_disk`` folder."""
    p = Path(path)
    rows: list[dict] = []
    if p.is_dir():
        try:
            import datasets
            ds = datasets.load_from_disk(str(p))
        except (FileNotFoundError, ValueError, OSError) as e:
            raise InputError(f"not a saved datasets folder ({str(e).splitlines()[0]})",
                             where=p) from None
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds and len(ds) != 1:
                raise InputError(f"DatasetDict has splits {list(ds)} but no 'train'", where=p)
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        for i, row in enumerate(ds, start=1):
            rows.append(validate_row(row, f"{p} row {i}", require_responses=require_responses))
    else:
        for lineno, row in read_jsonl(p):
            rows.append(validate_row(row, f"{p} row {lineno}",
                                     require_responses=require_responses))
    if not rows:
        raise InputError("no rows", where=p)
    kinds = {isinstance(r["prompt"], list) for r in rows}
    if len(kinds) > 1:
        raise InputError("mixes plain-text and conversational rows", where=p)
    return rows


def row_texts(row: dict) -> list[str]:
    """Every string in a row (to train a tiny tokenizer on)."""
    out = []
    for f in FIELDS:
        v = row.get(f)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(m["content"] for m in v)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _chat_ids(tokenizer, messages: list[dict], gen: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen,
                                        return_dict=False)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def tokenize_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Prompt ids (chat template with generation prompt for conversations)."""
    if isinstance(prompt, list):
        return _chat_ids(tokenizer, prompt, gen=True)
    return _ids(tokenizer, prompt)


@dataclass
class TokenizedPairs:
    """Token ids per example: ``prompt[i]``, ``chosen[i]``, ``rejected[i]`` (Python lists)."""

    prompt: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]

    def __len__(self) -> int:
        return len(self.prompt)

    def fingerprint(self) -> str:
        """sha256 of the token ids (keys the reference log-prob cache)."""
        import hashlib

        h = hashlib.sha256()
        for part in (self.prompt, self.chosen, self.rejected):
            for ids in part:
                h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
                h.update(b"|")
        return h.hexdigest()

    def texts_tokens(self) -> int:
        """Total tokens of all prompt+chosen and prompt+rejected sequences."""
        return sum(2 * len(p) + len(c) + len(r)
                   for p, c, r in zip(self.prompt, self.chosen, self.rejected))


def tokenize_pairs(rows: list[dict], tokenizer, *, max_length: int = 512,
                   max_prompt_length: int | None = None) -> TokenizedPairs:
    """Tokenize rows as TRL's DPOTrainer does, then fit ``max_length``.

    A prompt longer than ``max_prompt_length`` (default ``max_length // 2``) keeps its end;
    each response is then cut to ``max_length − len(prompt)`` tokens (keeps its start).
    """
    eos = tokenizer.eos_token
    max_prompt = max_prompt_length or max_length // 2
    out = TokenizedPairs([], [], [])
    for row in rows:
        if isinstance(row["prompt"], list):
            p = _chat_ids(tokenizer, row["prompt"], gen=True)
            pc = _chat_ids(tokenizer, row["prompt"] + row["chosen"], gen=False)
            pr = _chat_ids(tokenizer, row["prompt"] + row["rejected"], gen=False)
        else:
            c, r = row["chosen"], row["rejected"]
            c = c if c.endswith(eos) else c + eos
            r = r if r.endswith(eos) else r + eos
            p = _ids(tokenizer, row["prompt"])
            pc = _ids(tokenizer, row["prompt"] + c)
            pr = _ids(tokenizer, row["prompt"] + r)
        n = min(_common_prefix(p, pc), _common_prefix(p, pr))
        prompt, chosen, rejected = p[:n], pc[n:], pr[n:]
        if not prompt and tokenizer.bos_token_id is not None:
            prompt = [tokenizer.bos_token_id]
        prompt = prompt[-max_prompt:]
        room = max(1, max_length - len(prompt))
        out.prompt.append(prompt)
        out.chosen.append(chosen[:room])
        out.rejected.append(rejected[:room])
    return out


def collate_sequences(prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      padding_side: str = "right") -> dict[str, torch.Tensor]:
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


def collate_pairs(pairs: TokenizedPairs, indices: list[int], pad_id: int,
                  ref: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One batch for one forward: rows ``0..B-1`` chosen, ``B..2B-1`` rejected.

    Keys: ``input_ids``/``attention_mask``/``response_mask`` ``(2B, T)``, ``index (B,)``, and
    ``ref_logps (2B,)`` (chosen then rejected) when ``ref`` ``(N, 2)`` is given.
    """
    prompts = [pairs.prompt[i] for i in indices]
    batch = collate_sequences(prompts + prompts, [pairs.chosen[i] for i in indices]
                              + [pairs.rejected[i] for i in indices], pad_id)
    idx = torch.tensor(indices, dtype=torch.long)
    batch["index"] = idx
    if ref is not None:
        batch["ref_logps"] = torch.cat([ref[idx, 0], ref[idx, 1]])
    return batch


# ---- synthetic data (tests, demo, benchmark) ------------------------------------------

GOOD_WORDS = ("bright", "kind", "clear", "warm", "calm", "gentle", "honest", "brave")
BAD_WORDS = ("dull", "rude", "murky", "cold", "loud", "harsh", "sly", "timid")
SUBJECTS = ("sun", "river", "teacher", "city", "garden", "song", "road", "friend", "forest",
            "lamp", "market", "letter")


def synthetic_pairs(n: int, *, seed: int = 0, min_words: int = 2, max_words: int = 6,
                    prompt_words: int = 0) -> list[dict]:
    """A separable preference set: chosen responses use only :data:`GOOD_WORDS`, rejected
    only :data:`BAD_WORDS`; lengths drawn independently in ``[min_words, max_words]``.

    ``prompt_words`` pads the prompt with that many filler subject words (longer prompts,
    e.g. for benchmarks).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        subject = rng.choice(SUBJECTS)
        filler = " ".join(rng.choice(SUBJECTS) for _ in range(prompt_words))
        prompt = f"describe the {subject} {filler} :".replace("  ", " ")
        chosen = " ".join(rng.choice(GOOD_WORDS)
                          for _ in range(rng.randint(min_words, max_words)))
        rejected = " ".join(rng.choice(BAD_WORDS)
                            for _ in range(rng.randint(min_words, max_words)))
        rows.append({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected})
    return rows
