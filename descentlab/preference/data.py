"""Preference data in TRL's format: load, validate, tokenize once, collate.

A row is ``{"prompt": P, "chosen": C, "rejected": R}`` where all three are plain strings, or
all three are conversations (lists of ``{"role", "content"}`` messages; the prompt ends
before the assistant turn). Sources: a JSONL file (row = line number) or a folder written
by ``datasets.Dataset.save_to_disk`` (a DatasetDict uses its ``train`` split; row = index
from 1). A bad row raises :class:`InputError` naming file, row and field.

Tokenization follows TRL's ``DPOTrainer`` (1.16) exactly, so both see the same tokens: plain
text gets the eos token appended to each response, the prompt and prompt+response are
tokenized with the tokenizer's own special tokens (``tokenizer(text)``: a tokenizer whose
post-processor adds BOS gives the prompt its BOS, as TRL's ``processing_class(text=…)``
does), and the response starts where the two diverge; conversations go through the
tokenizer's chat template (prompt with the generation prompt), which writes its own BOS.
Length limits (:data:`TRUNCATIONS`): by default TRL's — a row whose prompt alone has
``max_length`` tokens or more is dropped, and each prompt+response sequence keeps its first
``max_length`` tokens; every drop and cut is counted in a :class:`TruncationReport` (and
warned about with its share). Collation concatenates the chosen rows then the rejected rows
into one batch (one forward for both).
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from descentlab.core.errors import InputError
from descentlab.core.io import read_jsonl
from descentlab.lm.logprobs import collate_sequences

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
    for f, v in out.items():
        text = v if isinstance(v, str) else "".join(m["content"] for m in v
                                                     if f == "prompt" or m["role"] != "user")
        if not text.strip():
            raise InputError(f"field {f!r} is empty", where=where)
    return out


def load_pairs(path: str | os.PathLike, *, require_responses: bool = True) -> list[dict]:
    """Validated rows from a JSONL file or a ``save_to_disk`` folder (module docstring).

    A bad row (a missing or empty field, a wrong type, text that is not UTF-8) raises
    :class:`InputError` naming the file and the row. ``require_responses=False``: rows need
    only ``prompt`` (on-policy training samples the responses).
    """
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
    return check_rows(rows, p)


def check_rows(rows: list[dict], where) -> list[dict]:
    """The checks on a whole set of validated rows: not empty, and not a mix of plain-text
    and conversational prompts. Returns ``rows``."""
    if not rows:
        raise InputError("no rows", where=where)
    kinds = {isinstance(r["prompt"], list) for r in rows}
    if len(kinds) > 1:
        raise InputError("mixes plain-text and conversational rows", where=where)
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
    """Plain-text ids as TRL's ``DPOTrainer`` makes them: ``tokenizer(text)`` with the
    tokenizer's special tokens (its BOS when its post-processor adds one)."""
    return tokenizer(text)["input_ids"]


def set_chat_template(tokenizer, template: str) -> None:
    """Give ``tokenizer`` a chat template: the text of a Jinja file, or template text itself
    (anything containing ``{{`` or ``{%``); InputError if it is neither."""
    if "{{" in template or "{%" in template:
        tokenizer.chat_template = template
        return
    path = Path(template)
    if not path.is_file():
        raise InputError("not a file, nor Jinja template text", where="chat_template")
    tokenizer.chat_template = path.read_text()


def require_chat_template(tokenizer) -> None:
    """InputError (one line, exit 2) when conversational data meets a tokenizer with no chat
    template (a base model), naming both fixes."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("conversational data needs a chat template, and this tokenizer has "
                         "none (a base model?): give one (a Jinja file or template text), or "
                         "use plain-text rows (prompt/chosen/rejected as strings)",
                         where="chat_template")


def _chat_ids(tokenizer, messages: list[dict], gen: bool) -> list[int]:
    require_chat_template(tokenizer)
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen,
                                        return_dict=False)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def tokenize_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Prompt ids as :func:`tokenize_pairs` makes them (chat template with generation prompt
    for conversations; the tokenizer's BOS, when it adds one, for plain text)."""
    if isinstance(prompt, list):
        return _chat_ids(tokenizer, prompt, gen=True)
    return _ids(tokenizer, prompt)


def _trl_fit(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
             max_prompt_length: int | None):
    # TRL: drop a row whose prompt fills max_length; keep the first max_length tokens of
    # prompt+response (so each response keeps its start). ``max_prompt_length`` (not in TRL
    # 1.16) drops a row whose prompt is longer.
    if len(prompt) >= max_length or (max_prompt_length and len(prompt) > max_prompt_length):
        return None
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


def _keep_end_fit(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
                  max_prompt_length: int | None):
    # the prompt keeps its last max_prompt_length (default max_length // 2) tokens, at most
    # max_length − 1 (a response token always fits), each response its first
    # max_length − len(prompt)
    keep = min(max_prompt_length or max_length // 2, max_length - 1)
    prompt = prompt[-keep:]                      # keep >= 1 (_fitter)
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


# How a row is fitted into ``max_length`` tokens: ``(prompt, chosen, rejected)`` or None (drop).
TRUNCATIONS = {
    "drop": _trl_fit,            # TRL's DPOTrainer (keep_start): drop rows, cut responses
    "keep_end": _keep_end_fit,   # cut the prompt's start, then the responses' ends
}


def _fitter(truncation: str, max_length: int, max_prompt_length: int | None):
    """The fit function of ``truncation``, after checking the limits (InputError naming the
    argument): a prompt token and a response token must fit ``max_length``."""
    if truncation not in TRUNCATIONS:
        raise InputError(f"unknown truncation {truncation!r}; choose from "
                         f"{', '.join(TRUNCATIONS)}", where="truncation")
    if max_length < 2:
        raise InputError(f"must be at least 2 (a prompt and a response token), got "
                         f"{max_length}", where="max_length")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise InputError(f"must be at least 1, got {max_prompt_length}",
                         where="max_prompt_length")
    return TRUNCATIONS[truncation]


@dataclass
class TruncationReport:
    """What fitting rows into ``max_length`` did: counts of dropped rows and of cut prompts and
    responses (a cut response loses its end, eos included)."""

    mode: str
    max_length: int
    rows: int = 0              # rows tokenized
    dropped: int = 0           # rows dropped (prompt fills max_length / max_prompt_length)
    prompts_cut: int = 0       # kept rows whose prompt lost its start (keep_end)
    chosen_cut: int = 0        # kept rows whose chosen response lost its end
    rejected_cut: int = 0      # kept rows whose rejected response lost its end

    @property
    def kept(self) -> int:
        return self.rows - self.dropped

    @property
    def affected(self) -> int:
        """Rows dropped or cut in any part (each row once)."""
        return self.dropped + self._cut_rows

    _cut_rows: int = field(default=0, repr=False)

    def line(self) -> str:
        """One line for logs and warnings, with the shares."""
        n = max(1, self.rows)
        return (f"max_length {self.max_length} ({self.mode}): {self.dropped}/{self.rows} rows "
                f"dropped ({self.dropped / n:.0%}), prompts cut {self.prompts_cut}, chosen cut "
                f"{self.chosen_cut}, rejected cut {self.rejected_cut} (of {self.kept} kept)")

    def as_dict(self) -> dict:
        return {"mode": self.mode, "max_length": self.max_length, "rows": self.rows,
                "kept": self.kept, "dropped": self.dropped, "prompts_cut": self.prompts_cut,
                "chosen_cut": self.chosen_cut, "rejected_cut": self.rejected_cut}


@dataclass
class TokenizedPairs:
    """Token ids per example: ``prompt[i]``, ``chosen[i]``, ``rejected[i]`` (Python lists);
    ``rows[i]``: the index of example i in the rows given to :func:`tokenize_pairs` (rows can
    be dropped); ``truncation``: what fitting into ``max_length`` did."""

    prompt: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]
    rows: list[int] = field(default_factory=list)
    truncation: TruncationReport | None = None

    def __len__(self) -> int:
        return len(self.prompt)

    def fingerprint(self) -> str:
        """sha256 of the token ids (keys the reference log-prob cache)."""
        return ids_fingerprint(self.prompt, self.chosen, self.rejected)


def ids_fingerprint(*parts: list[list[int]]) -> str:
    """sha256 of lists of token-id sequences (int64 bytes, each sequence ended by ``|``)."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        for ids in part:
            h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
            h.update(b"|")
    return h.hexdigest()


def tokenize_pairs(rows: list[dict], tokenizer, *, max_length: int = 512,
                   max_prompt_length: int | None = None, truncation: str = "drop",
                   warn: bool = True) -> TokenizedPairs:
    """Tokenize rows as TRL's DPOTrainer does, then fit ``max_length`` by ``truncation``.

    ``drop`` (default, TRL's): a row whose prompt has ``>= max_length`` tokens (or more than
    ``max_prompt_length``, when given) is dropped; a response is cut to ``max_length −
    len(prompt)`` tokens (keeps its start). ``keep_end``: a prompt longer than
    ``max_prompt_length`` (default ``max_length // 2``; at most ``max_length − 1``, so a
    response token always fits) keeps its end, then responses are cut likewise. Either way
    every prompt + response has at most ``max_length`` tokens. Counts go to
    ``result.truncation``; with ``warn``, any drop or cut is a ``UserWarning`` with its share.
    All rows dropped, or ``max_length < 2``: InputError.
    """
    fit = _fitter(truncation, max_length, max_prompt_length)
    eos = tokenizer.eos_token
    rep = TruncationReport(truncation, max_length, rows=len(rows))
    out = TokenizedPairs([], [], [], truncation=rep)
    for k, row in enumerate(rows):
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
        fitted = fit(prompt, chosen, rejected, max_length, max_prompt_length)
        if fitted is None:
            rep.dropped += 1
            continue
        fp, fc, fr = fitted
        cuts = (len(fp) < len(prompt), len(fc) < len(chosen), len(fr) < len(rejected))
        rep.prompts_cut += cuts[0]
        rep.chosen_cut += cuts[1]
        rep.rejected_cut += cuts[2]
        rep._cut_rows += any(cuts)
        out.prompt.append(fp)
        out.chosen.append(fc)
        out.rejected.append(fr)
        out.rows.append(k)
    if rows and not out.prompt:
        raise InputError(f"every row was dropped: {rep.line()}; raise max_length or use "
                         "truncation='keep_end'", where="max_length")
    if warn and rep.affected:
        warnings.warn(f"{rep.affected}/{rep.rows} rows ({rep.affected / rep.rows:.0%}) dropped "
                      f"or cut: {rep.line()}", UserWarning, stacklevel=2)
    return out


def fit_prompts(prompts: list[list[int]], *, max_length: int,
                max_prompt_length: int | None = None, truncation: str = "drop",
                warn: bool = True) -> tuple[list[list[int]], list[int], TruncationReport]:
    """Fit prompts alone (on-policy: the responses are sampled later, in room the caller
    reserves) by the rules of :func:`tokenize_pairs`: ``(kept prompts, their indices,
    report)``.

    ``drop`` (default, TRL's): a prompt of ``>= max_length`` tokens (or more than
    ``max_prompt_length``, when given) is dropped. ``keep_end``: a prompt longer than
    ``max_prompt_length`` (default ``max_length // 2``; at most ``max_length − 1``) keeps its
    last tokens. The report
    counts dropped and cut prompts (``rows`` = prompts); with ``warn`` any of them is a
    ``UserWarning`` with its share. All prompts dropped: InputError.
    """
    fit = _fitter(truncation, max_length, max_prompt_length)
    rep = TruncationReport(truncation, max_length, rows=len(prompts))
    kept, index = [], []
    for k, prompt in enumerate(prompts):
        fitted = fit(prompt, [], [], max_length, max_prompt_length)
        if fitted is None:
            rep.dropped += 1
            continue
        cut = len(fitted[0]) < len(prompt)
        rep.prompts_cut += cut
        rep._cut_rows += cut
        kept.append(fitted[0])
        index.append(k)
    if prompts and not kept:
        raise InputError(f"every prompt was dropped: {rep.line()}; raise max_length or use "
                         "truncation='keep_end'", where="max_length")
    if warn and rep.affected:
        warnings.warn(f"{rep.affected}/{rep.rows} prompts ({rep.affected / rep.rows:.0%}) "
                      f"dropped or cut: {rep.line()}", UserWarning, stacklevel=2)
    return kept, index, rep


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


