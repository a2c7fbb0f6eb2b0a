"""The retrieval-augmented LM objective and its five variants (SPEC part E).

The note's objective ("A random thought on retrieval-augmented generation", Cho 2024):

    max_θ Σ_{x∈D} E_{i∼U(1,|x|)} log p_θ(x_{i+1:|x|} | x_{1:i}, retrieval(x_{1:i}, D))

One training example is a target document x, a split point i (uniform over the token
positions that leave a non-empty suffix, ``1 ≤ i ≤ |x|-1``), the top-k passages retrieved
for the prefix text, and the sequence

    [bos] passage_1 [sep] … passage_k [sep] x_{1:i} x_{i+1:|x|}

(passages in rank order, truncated to a token budget; ``sep`` is the tokenizer's eos) with
the loss on the suffix tokens x_{i+1:|x|} only.

Variants (:data:`VARIANTS`, one function each: ``(state, epoch) -> EpochPlan``) decide which
documents are targets and which are retrievable:

- ``closed_book``   every training document is a target, no retrieval (plain LM);
- ``full``          retrieval from the whole index, the target itself included (as written);
- ``leave_one_out`` retrieval from the index minus the target document (``exclude=doc``,
  REALM/RETRO practice) or minus every document of its entity (``exclude=entity``);
- ``split``         a fixed split of the training documents: targets from D_train only,
  retrieval from D_retrieval only (disjoint; ``split_ratio`` of each entity's documents);
- ``resplit``       a fresh split each epoch, so each document is sometimes a target and
  sometimes retrievable.

Documents that are in the index but not trainable (the experiment's "retrieval-only" people)
are retrievable in every variant that retrieves and never targets. Retrievals are cached
(:class:`~descentlab.rag.retrieval.RetrievalCache`, key ``(document, split point, pool)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus
from descentlab.rag.retrieval import EXCLUSIONS, RetrievalCache, exclusion


class EpochPlan(NamedTuple):
    """Who is a target and what is retrievable in one epoch.

    ``targets`` (n,) document indices; ``allowed`` (D,) bool retrievable mask or None for
    no retrieval; ``exclude`` an exclusion mode of :data:`retrieval.EXCLUSIONS`; ``pool``
    an id that is equal for epochs sharing the same ``allowed`` (retrieval-cache key).
    """

    targets: np.ndarray
    allowed: np.ndarray | None
    exclude: str
    pool: int


def _plan_closed_book(state: RagData, epoch: int) -> EpochPlan:
    return EpochPlan(np.flatnonzero(state.trainable), None, "none", 0)


def _plan_full(state: RagData, epoch: int) -> EpochPlan:
    return EpochPlan(np.flatnonzero(state.trainable), np.ones(len(state.corpus), bool), "none", 0)


def _plan_leave_one_out(state: RagData, epoch: int) -> EpochPlan:
    return EpochPlan(np.flatnonzero(state.trainable), np.ones(len(state.corpus), bool),
                     state.config.exclude, 0)


def _split_mask(state: RagData, draw: int) -> np.ndarray:
    """The ``draw``-th random split of the trainable documents (retrieval-set mask)."""
    return split_documents(state.corpus, state.trainable, state.config.split_ratio,
                           np.random.default_rng([state.seed, 7919, draw]))


def _plan_split(state: RagData, epoch: int) -> EpochPlan:
    retr = _split_mask(state, 0)
    return EpochPlan(np.flatnonzero(state.trainable & ~retr), ~state.trainable | retr, "none", 0)


def _plan_resplit(state: RagData, epoch: int) -> EpochPlan:
    retr = _split_mask(state, epoch)  # epoch 0 draws split's split; later epochs fresh ones
    return EpochPlan(np.flatnonzero(state.trainable & ~retr), ~state.trainable | retr, "none",
                     epoch + 1)


VARIANTS: dict[str, Callable[[Any, int], EpochPlan]] = {
    "closed_book": _plan_closed_book,
    "full": _plan_full,
    "leave_one_out": _plan_leave_one_out,
    "split": _plan_split,
    "resplit": _plan_resplit,
}


def _exclusions() -> list[str]:
    """Leave-one-out granularities: the exclusion registry minus ``none`` (= ``full``)."""
    return [name for name in EXCLUSIONS if name != "none"]


@dataclasses.dataclass
class RagObjectiveConfig:
    """How training examples are built: variant, retrieval depth, context budget, split."""

    variant: str = option("split", "training variant", choices=VARIANTS)
    k: int = option(2, "passages retrieved per example", min=1)
    context_tokens: int = option(96, "token budget for the retrieved passages (separators "
                                     "included)", min=1)
    exclude: str = option("doc", "leave_one_out: exclude the target document or its whole entity",
                          choices=_exclusions)
    split_ratio: float = option(0.5, "split/resplit: fraction of each entity's training "
                                     "documents put in the retrieval set (0 < r < 1)", gt=0)

    def __post_init__(self) -> None:
        check_config(self)
        if not self.split_ratio < 1:
            raise field_error(self, "split_ratio", f"must be < 1, got {self.split_ratio}")


def split_documents(corpus: Corpus, trainable: np.ndarray, ratio: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Boolean (D,) mask of the trainable documents that go to the retrieval set.

    Stratified by entity: an entity with n ≥ 2 trainable documents puts
    ``clip(round(ratio·n), 1, n-1)`` of them (chosen at random) in the retrieval set, so each
    target keeps a sibling to retrieve; entities with one document are pooled and
    ``round(ratio·count)`` of them chosen. The count is the same for every ``rng``.
    """
    retr = np.zeros(len(corpus), dtype=bool)
    singles = []
    for members in corpus.entity_members:
        m = members[trainable[members]]
        if len(m) >= 2:
            n_r = int(np.clip(round(ratio * len(m)), 1, len(m) - 1))
            retr[rng.permutation(m)[:n_r]] = True
        elif len(m) == 1:
            singles.append(int(m[0]))
    if singles:
        retr[rng.permutation(np.asarray(singles))[: int(round(ratio * len(singles)))]] = True
    return retr


def check_splittable(doc_ids: Sequence[list[int]], names: Sequence[str]) -> None:
    """InputError naming the first document (``names``: their ids) whose token ids
    ``doc_ids`` are fewer than 2: there is no split point ``1 ≤ i ≤ |x|-1``."""
    short = next((n for n, t in zip(names, doc_ids) if len(t) < 2), None)
    if short is not None:
        raise InputError("document has fewer than 2 tokens (nothing to split)",
                         where=f"document {short!r}")


def check_fits(n_tokens: int, max_length: int | None, where: str) -> None:
    """InputError naming ``where`` when a sequence of (up to) ``n_tokens`` is longer than the
    model's ``max_length`` positions (None: no limit)."""
    if max_length is not None and n_tokens > max_length:
        raise InputError(f"a sequence of passages and text takes up to {n_tokens} tokens but "
                         f"the model takes {max_length}: lower context_tokens or shorten "
                         f"documents", where=where)


def build_sequence(passages: list[list[int]], prefix: list[int], suffix: list[int], *,
                   budget: int, bos: int | None, sep: int | None) -> tuple[list[int], int]:
    """``[bos] p_1 [sep] … p_k [sep] prefix suffix`` and the index where ``suffix`` starts.

    Passages (in rank order) fill at most ``budget`` tokens, their separators included; the
    passage that crosses the budget is truncated, later ones dropped. With no passages the
    sequence is ``[bos] prefix suffix``.
    """
    ids: list[int] = [bos] if bos is not None else []
    used = 0
    for p in passages:
        room = budget - used - (1 if sep is not None else 0)
        if room <= 0:
            break
        chunk = p[:room] + ([sep] if sep is not None else [])
        ids += chunk
        used += len(chunk)
    ids += prefix
    return ids + suffix, len(ids)


class RagData:
    """Per-epoch training examples for one variant over one index corpus.

    ``corpus`` is everything retrievable during training; ``trainable`` (D,) marks the
    documents that may be targets. Documents are tokenized once. ``example(epoch, j)`` is a
    deterministic function of ``(seed, epoch, j)``: exact resume needs nothing else.
    """

    def __init__(self, corpus: Corpus, trainable: np.ndarray, tokenizer, retriever,
                 config: RagObjectiveConfig, *, seed: int = 0, max_length: int | None = None):
        self.corpus = corpus
        self.trainable = np.asarray(trainable, dtype=bool)
        if self.trainable.shape != (len(corpus),) or not self.trainable.any():
            raise InputError("no trainable documents", where="corpus")
        self.tokenizer = tokenizer
        self.retriever = retriever
        self.config = config
        self.seed = seed
        self.plan_fn = VARIANTS[config.variant]
        enc = tokenizer(corpus.texts, add_special_tokens=False, return_offsets_mapping=True)
        self.doc_ids: list[list[int]] = enc["input_ids"]
        self.offsets: list[list[tuple[int, int]]] = enc["offset_mapping"]
        check_splittable(self.doc_ids, corpus.ids)
        self.bos = tokenizer.bos_token_id
        self.sep = tokenizer.eos_token_id
        self.cache = RetrievalCache()
        self._epochs: dict[int, tuple[EpochPlan, np.ndarray, np.ndarray | None]] = {}
        first = self.plan(0)
        self.n_per_epoch = len(first.targets)
        # before any training: the longest sequence an example can be (build_sequence:
        # [bos], passages filling at most the budget, the whole target document)
        longest = max(np.flatnonzero(self.trainable), key=lambda d: len(self.doc_ids[d]))
        passages = 0 if first.allowed is None else min(
            config.context_tokens, config.k * (max(map(len, self.doc_ids)) + 1))
        check_fits((self.bos is not None) + passages + len(self.doc_ids[longest]), max_length,
                   f"document {corpus[int(longest)].id!r}")
        self.epoch_data(0)  # bad k / empty pools fail here, before any training

    def plan(self, epoch: int) -> EpochPlan:
        return self.plan_fn(self, epoch)

    def prefix_text(self, doc: int, i: int) -> str:
        """The text of the first ``i`` tokens of document ``doc`` (the retrieval query)."""
        return self.corpus[doc].text[: self.offsets[doc][i - 1][1]]

    def epoch_data(self, epoch: int) -> tuple[EpochPlan, np.ndarray, np.ndarray | None]:
        """``(plan, split points (n,), retrieved passages (n, k) or None)`` of an epoch."""
        if epoch not in self._epochs:
            plan = self.plan(epoch)
            if len(plan.targets) != self.n_per_epoch:
                raise RuntimeError("variant changed the number of targets between epochs")
            rng = np.random.default_rng([self.seed, epoch])
            lengths = np.array([len(self.doc_ids[t]) for t in plan.targets])
            splits = rng.integers(1, lengths)  # i ~ U{1, …, |x|-1}: the suffix is non-empty
            passages = None
            if plan.allowed is not None:
                keys = np.stack([plan.targets, splits, np.full_like(splits, plan.pool)], 1)
                excl = exclusion(self.corpus, plan.targets, plan.exclude)

                def search(rows: np.ndarray) -> np.ndarray:
                    queries = [self.prefix_text(plan.targets[r], splits[r]) for r in rows]
                    return self.retriever.search(queries, self.config.k, exclude=excl[rows],
                                                 allowed=plan.allowed).indices

                passages = self.cache.lookup(keys, search)
            if len(self._epochs) >= 2:
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = (plan, splits, passages)
        return self._epochs[epoch]

    def example(self, epoch: int, j: int) -> tuple[list[int], int]:
        """``(input_ids, suffix_start)`` of the ``j``-th target of ``epoch``."""
        plan, splits, passages = self.epoch_data(epoch)
        doc, i = int(plan.targets[j]), int(splits[j])
        x = self.doc_ids[doc]
        ctx = [] if passages is None else [self.doc_ids[p] for p in passages[j]]
        return build_sequence(ctx, x[:i], x[i:], budget=self.config.context_tokens,
                              bos=self.bos, sep=self.sep)  # fits: checked in __init__

    def batch_fn(self):
        """A ``core.training`` batch function over the endless per-epoch example stream."""
        from descentlab.core.training import EpochSampler

        samplers: dict[tuple, EpochSampler] = {}

        def batch_fn(step: int, micro: int, ctx) -> dict:
            key = (ctx.batch_size, ctx.grad_accum, ctx.world_size, ctx.seed)
            if key not in samplers:
                samplers[key] = EpochSampler(self.n_per_epoch, ctx.batch_size, ctx.grad_accum,
                                             ctx.world_size, ctx.seed)
            s = samplers[key]
            pos = s.position(step, micro, ctx.rank)
            js = s.indices(step, micro, ctx.rank)
            examples = [self.example((pos + q) // self.n_per_epoch, j) for q, j in enumerate(js)]
            return collate(examples, self.tokenizer.pad_token_id)

        return batch_fn


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict:
    """Right-pad ``(input_ids, suffix_start)`` pairs into tensors.

    Returns ``input_ids`` (B, T) long, ``attention_mask`` (B, T) long and ``response_mask``
    (B, T) bool, True exactly on each row's suffix tokens.
    """
    from descentlab.lm.logprobs import collate_sequences

    return collate_sequences([x[:start] for x, start in examples],
                             [x[start:] for x, start in examples], pad_id)


def suffix_loss(model, batch: dict) -> tuple[Any, dict]:
    """Mean negative log-likelihood per suffix token: -Σ log p(x_t | x_<t) / #suffix tokens.

    ``batch`` from :func:`collate`; prefix, passages and padding carry no loss.
    """
    from descentlab.lm.logprobs import sequence_logps

    lp = sequence_logps(model, batch["input_ids"], batch["attention_mask"],
                           batch["response_mask"])
    n = lp.n_tokens.sum().clamp(min=1)
    loss = -lp.sum.sum() / n
    return loss, {"suffix_tokens": lp.n_tokens.float().mean()}
