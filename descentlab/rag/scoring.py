"""Evaluation of a retrieval-augmented LM: perplexity, cloze QA, counterfactual following.

All scoring is teacher-forced, one forward pass per sequence ``[bos] passages [sep] prompt
continuation`` (the layout of :func:`descentlab.rag.objective.build_sequence`):

- **perplexity**: exp(Σ NLL / #tokens) of document suffixes after a seeded split point, with
  or without the passages retrieved for the prefix (the document itself excluded);
- **exact match**: the greedy continuation of the probe equals the gold value and its
  closing period. Greedy decoding reproduces the gold tokens iff at every gold position
  the argmax of the model's next-token distribution (given the gold tokens before it) is
  the gold token, which is what is checked;
- **candidate accuracy**: the gold value has the highest log p(value "." | prompt) among
  the probe's candidates (a softer signal than EM for small models);
- **counterfactual**: for a probe whose indexed documents were edited, the rate of
  following the document (EM with the new value), of answering from memory (EM with the
  old value), and the memorisation ratio E[p_old / (p_old + p_new)] (0 = always trusts
  the document, 1 = always its memory, 0.5 = indifferent);
- **recall@k**: a document of the probe's entity is among the top-k retrieved.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus
from descentlab.rag.objective import build_sequence, check_fits, check_splittable, collate
from descentlab.rag.retrieval import exclusion
from descentlab.rag.synthetic import Probe


def load_probes(path: str | os.PathLike) -> list[Probe]:
    """Cloze probes from JSONL: ``{prompt, answer, candidates?, entity?, end?}`` per line
    (``end``: what follows the answer in the text, "." by default).

    ``prompt`` and ``answer`` must be non-empty text; ``candidates`` (optional) a list of
    non-empty texts (the answer is added in front if missing). Bad input raises InputError
    naming the file, line and field; an empty file names the file.
    """
    from descentlab.core.io import read_jsonl

    probes = []
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        for f in ("prompt", "answer"):
            if not isinstance(obj.get(f), str) or not obj[f].strip():
                raise InputError(f"field {f!r} must be non-empty text", where=where)
        cands = obj.get("candidates")
        if cands is None:
            cands = [obj["answer"]]
        if not isinstance(cands, list) or not all(isinstance(c, str) and c.strip()
                                                  for c in cands):
            raise InputError("field 'candidates' must be a list of non-empty texts",
                             where=where)
        cands = tuple(cands)
        if obj["answer"] not in cands:
            cands = (obj["answer"], *cands)
        entity = obj.get("entity") or ""
        if not isinstance(entity, (str, int)):
            raise InputError("field 'entity' must be text", where=where)
        end = obj.get("end", ".")
        if not isinstance(end, str):
            raise InputError("field 'end' must be text", where=where)
        probes.append(Probe(str(entity), "", obj["prompt"], obj["answer"], obj["answer"],
                            cands, end))
    if not probes:
        raise InputError("no probes in the file", where=path)
    return probes


@dataclasses.dataclass
class Reader:
    """A model, its tokenizer and how context is formed (``k`` passages, ``budget`` tokens).
    ``max_length``: the model's positions (:func:`~descentlab.lm.tiny.context_length`);
    a longer sequence is an InputError when it is built (None: unchecked)."""

    model: object
    tokenizer: object
    k: int = 2
    budget: int = 96
    batch_size: int = 64
    device: str = "cpu"
    max_length: int | None = None
    _docs: dict = dataclasses.field(default_factory=dict, repr=False)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def continuations(self, pairs: Sequence[tuple[str, str]], ends: Sequence[str],
                      ) -> list[tuple[list[int], list[int]]]:
        """``(prompt ids, ids of " value" + end)`` per ``(prompt, value)`` and ``end``, split
        so that their concatenation is the tokenization of ``"prompt value" + end``
        (batched)."""
        prompts = self.encode([p for p, _ in pairs])
        fulls = self.encode([f"{p} {v}{e}" for (p, v), e in zip(pairs, ends)])
        out = []
        for (_, v), e, p, full in zip(pairs, ends, prompts, fulls):
            if full[: len(p)] == p:
                out.append((p, full[len(p):]))
            else:  # a tokenizer that merges across the boundary: encode the value alone
                out.append((p, self.encode([f" {v}{e}"])[0]))
        return out

    def continuation(self, prompt: str, value: str) -> tuple[list[int], list[int]]:
        """One ``(prompt ids, ids of " value.")`` pair (see :meth:`continuations`)."""
        return self.continuations([(prompt, value)], ["."])[0]

    def score(self, seqs: list[tuple[list[int], int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For ``(ids, start)`` pairs: Σ log p of tokens ``ids[start:]`` (N,), their count (N,),
        and whether every one of them is the argmax (greedy reproduces them) (N,) bool."""
        import torch

        model = self.model
        model.eval()
        order = np.argsort([len(s[0]) for s in seqs], kind="stable")
        logp = np.zeros(len(seqs))
        count = np.zeros(len(seqs), dtype=np.int64)
        greedy = np.zeros(len(seqs), dtype=bool)
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for s in range(0, len(seqs), self.batch_size):
                rows = order[s: s + self.batch_size]
                batch = collate([seqs[r] for r in rows], pad)
                ids, attn, mask = (batch[k].to(self.device)
                                   for k in ("input_ids", "attention_mask", "response_mask"))
                logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
                labels, m = ids[:, 1:], mask[:, 1:]  # (B, T-1): token t predicted at t-1
                lp = logits.log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)
                hit = (logits.argmax(-1) == labels) | ~m
                logp[rows] = (lp * m).sum(-1).double().cpu().numpy()
                count[rows] = m.sum(-1).cpu().numpy()
                greedy[rows] = hit.all(-1).cpu().numpy()
        return logp, count, greedy

    def contexts(self, retriever, queries: Sequence[str], exclude: np.ndarray | None = None,
                 ) -> list[list[list[int]]]:
        """Token ids of the top-k passages per query (empty lists without a retriever)."""
        if retriever is None:
            return [[] for _ in queries]
        hits = retriever.search(list(queries), self.k, exclude=exclude).indices
        if id(retriever.corpus) not in self._docs:  # tokenize each index corpus once
            self._docs = {id(retriever.corpus): self.encode(retriever.corpus.texts)}
        doc_ids = self._docs[id(retriever.corpus)]
        return [[doc_ids[d] for d in row] for row in hits]

    def sequence(self, ctx: list[list[int]], prefix: list[int], cont: list[int],
                 where: str = "sequence"):
        """``(ids, start)`` of :func:`~descentlab.rag.objective.build_sequence`, checked
        against ``max_length`` (an InputError names ``where``)."""
        out = build_sequence(ctx, prefix, cont, budget=self.budget,
                             bos=self.tokenizer.bos_token_id, sep=self.tokenizer.eos_token_id)
        check_fits(len(out[0]), self.max_length, where)
        return out


def perplexity(reader: Reader, corpus: Corpus, docs: Sequence[int], retriever=None, *,
               seed: int = 0) -> float:
    """exp(mean NLL) of the suffixes of ``corpus[docs]`` after seeded split points.

    With ``retriever`` (indexed over ``corpus``), the top-k passages for each prefix, the
    document itself excluded, precede it. Same split points with and without retrieval.
    """
    return perplexity_job(reader, corpus, docs, retriever, seed=seed)()


def perplexity_job(reader: Reader, corpus: Corpus, docs: Sequence[int], retriever=None, *,
                   seed: int = 0) -> Callable[[], float]:
    """:func:`perplexity` in two steps: the sequences are built and checked now (a document
    of fewer than 2 tokens or a sequence longer than the model's positions is an
    InputError); the returned function scores them."""
    ids = reader.encode([corpus[d].text for d in docs])
    check_splittable(ids, [corpus[d].id for d in docs])
    offsets = reader.tokenizer([corpus[d].text for d in docs], add_special_tokens=False,
                               return_offsets_mapping=True)["offset_mapping"]
    rng = np.random.default_rng([seed, 104729])
    splits = rng.integers(1, [len(x) for x in ids])
    queries = [corpus[d].text[: offsets[r][splits[r] - 1][1]] for r, d in enumerate(docs)]
    excl = exclusion(corpus, docs, "doc") if retriever is not None else None
    ctxs = reader.contexts(retriever, queries, excl)
    seqs = [reader.sequence(c, x[:i], x[i:], f"document {corpus[d].id!r}")
            for c, x, i, d in zip(ctxs, ids, splits, docs)]

    def run() -> float:
        logp, count, _ = reader.score(seqs)
        return float(math.exp(-logp.sum() / max(1, count.sum())))

    return run


def entity_exclusion(corpus: Corpus, entities: Sequence[str]) -> np.ndarray:
    """Padded (P, m) indices of every document of each entity (``-1`` = padding)."""
    rows = [corpus.docs_of(e) for e in entities]
    out = np.full((len(rows), max(1, max(map(len, rows), default=1))), -1, dtype=np.int64)
    for r, docs in enumerate(rows):
        out[r, : len(docs)] = docs
    return out


def score_probes(reader: Reader, probes: Sequence[Probe], retriever=None, *,
                 distractor: bool = False) -> dict[str, np.ndarray]:
    """Per probe: ``em`` (greedy = answer), ``em_original`` (greedy = original value),
    ``candidate_acc`` (answer ranks first), ``p_answer``/``p_original`` (normalised over the
    candidates), as arrays (P,).

    ``distractor``: retrieve with every document of the probe's entity excluded, so the
    context is another person's (the training format, with memory as the only source).
    """
    return score_probes_job(reader, probes, retriever, distractor=distractor)()


def score_probes_job(reader: Reader, probes: Sequence[Probe], retriever=None, *,
                     distractor: bool = False) -> Callable[[], dict[str, np.ndarray]]:
    """:func:`score_probes` in two steps: the sequences are built and checked now (one
    longer than the model's positions is an InputError); the returned function scores
    them."""
    excl = None
    if distractor and retriever is not None:
        excl = entity_exclusion(retriever.corpus, [p.entity for p in probes])
    ctxs = reader.contexts(retriever, [p.prompt for p in probes], excl)
    owner = [n for n, p in enumerate(probes) for _ in p.candidates]
    cand = [c for p in probes for c in p.candidates]
    pairs = reader.continuations([(probes[n].prompt, c) for n, c in zip(owner, cand)],
                                 [probes[n].end for n in owner])
    seqs = [reader.sequence(ctxs[n], prompt_ids, cont, f"probe {probes[n].prompt!r}")
            for n, (prompt_ids, cont) in zip(owner, pairs)]
    return lambda: _probe_scores(probes, cand, owner, *reader.score(seqs))


def _probe_scores(probes: Sequence[Probe], cand: list[str], owner: list[int], logp: np.ndarray,
                  count: np.ndarray, greedy: np.ndarray) -> dict[str, np.ndarray]:
    """The per-probe arrays of :func:`score_probes` from the scores of every candidate."""
    P = len(probes)
    out = {k: np.zeros(P) for k in ("em", "em_original", "candidate_acc", "p_answer",
                                    "p_original")}
    owner_arr = np.asarray(owner)
    for n, p in enumerate(probes):
        rows = np.flatnonzero(owner_arr == n)
        lp = logp[rows]
        probs = np.exp(lp - lp.max())
        probs /= probs.sum()
        names = [cand[r] for r in rows]
        a, o = names.index(p.answer), names.index(p.original)
        out["em"][n] = greedy[rows[a]]
        out["em_original"][n] = greedy[rows[o]]
        out["candidate_acc"][n] = float(np.argmax(lp) == a)
        out["p_answer"][n] = probs[a]
        out["p_original"][n] = probs[o]
    return out


def counterfactual_summary(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Follow rate, memory rate and memorisation ratio of counterfactual probe scores."""
    denom = np.maximum(scores["p_answer"] + scores["p_original"], 1e-30)
    return {
        "counterfactual_follow_rate": float(scores["em"].mean()),
        "counterfactual_memory_rate": float(scores["em_original"].mean()),
        "memorisation_ratio": float((scores["p_original"] / denom).mean()),
    }


def recall_at_k(retriever, probes: Sequence[Probe], k: int) -> float:
    """Fraction of probes with a document of their entity among the top-k retrieved."""
    hits = retriever.search([p.prompt for p in probes], k).indices
    ent = np.array(retriever.corpus.entity_names)[retriever.corpus.entity_codes]
    return float(np.mean([p.entity in set(ent[row]) for p, row in zip(probes, hits)]))
