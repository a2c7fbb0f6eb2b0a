"""The rag wing as library calls: train a model with a retrieval-augmented objective, evaluate
it, search or reuse a saved index. No output folder is needed and nothing is printed; the
CLI (``descentlab rag``) only parses, calls these, prints and writes.

    from descentlab.rag import BM25Index, load_corpus, train, evaluate
    corpus = load_corpus("docs.jsonl")
    index = BM25Index(corpus)                       # or BM25Index.load("idx/")
    run = train(corpus, index=index, objective=RagObjectiveConfig(variant="leave_one_out"))
    ev = evaluate(run.model, index=index, tokenizer=run.tokenizer, probes=probes)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from descentlab.core.config import check_config, option
from descentlab.core.errors import InputError
from descentlab.core.seeding import torch_threads
from descentlab.rag.corpus import Corpus, load_corpus
from descentlab.rag.retrieval import RETRIEVERS, BM25Index, build_retriever, check_index_corpus

PathLike = str | os.PathLike


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Inside: transformers' progress bars off and its logging at errors only; the previous
    settings are restored on exit (nothing changes for the rest of the process)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(level)


def as_corpus(corpus: Corpus | PathLike) -> Corpus:
    return corpus if isinstance(corpus, Corpus) else load_corpus(corpus)


def as_index(index: Any):
    """A retriever object as is (anything with ``search`` and ``corpus``), else the saved
    BM25 index folder at ``index``."""
    return index if hasattr(index, "search") else BM25Index.load(index)


def retriever_for(corpus: Corpus, index: Any, retriever: str, where: str = "index"):
    """``index`` (a retriever object or a saved index folder) checked against ``corpus`` (a
    mismatch is an InputError naming ``where``), else a fresh ``retriever`` over it."""
    if index is None:
        return build_retriever(retriever, corpus)
    idx = as_index(index)
    check_index_corpus(idx, corpus, where=where)
    return idx


@dataclasses.dataclass
class RagTrainResult:
    """A trained model and how it was trained (``history``: the training log records)."""

    model: Any
    tokenizer: Any
    variant: str
    steps: int
    history: list[dict]
    docs: int
    targets_per_epoch: int
    seconds: float
    device: str
    retrieval_cache_hit_rate: float
    out_dir: Path | None = None

    @property
    def final_loss(self) -> float | None:
        losses = [r["loss"] for r in self.history if "loss" in r]
        return losses[-1] if losses else None

    def save(self, path: PathLike) -> Path:
        """``save_pretrained`` the model and tokenizer into folder ``path`` (quietly)."""
        from descentlab.core.training import save_pretrained

        with quiet_libraries():
            return save_pretrained(self.model, self.tokenizer, path)

    def summary(self) -> dict[str, Any]:
        """The JSON-able scalars (what ``rag train`` prints and writes)."""
        return {"variant": self.variant, "steps": self.steps, "docs": self.docs,
                "targets_per_epoch": self.targets_per_epoch, "final_loss": self.final_loss,
                "retrieval_cache_hit_rate": round(self.retrieval_cache_hit_rate, 4),
                "seconds": round(self.seconds, 2)}


def train(corpus: Corpus | PathLike, *, model: Any = "tiny", tokenizer: Any = None,
          objective=None, train_config=None, tiny=None,
          index: BM25Index | PathLike | None = None, retriever: str = "bm25",
          retrieval_corpus: Corpus | PathLike | None = None, out_dir: PathLike | None = None,
          resume: bool = False, device: str = "cpu", seed: int = 0, threads: int | None = 1,
          ) -> RagTrainResult:
    """Train a causal LM on ``corpus`` with the retrieval-augmented objective.

    ``objective``: :class:`~descentlab.rag.objective.RagObjectiveConfig` (variant, k,
    budget, split); ``train_config``: :class:`~descentlab.core.training.TrainConfig` (its
    seed becomes ``seed``). ``model``: ``"tiny"`` (a random-init GPT-2 of size ``tiny``, a
    :class:`~descentlab.lm.tiny.TinyLMConfig`, with a tokenizer trained on the documents), a
    local model folder, or a model object with its ``tokenizer``. Retrieval draws from
    ``corpus`` + ``retrieval_corpus`` (retrievable, never targets): a saved ``index`` of
    exactly those documents (its fingerprint is checked) or a fresh ``retriever``.
    ``out_dir``: where the training log and checkpoint go (``resume`` continues from it;
    the objective, the documents, the retriever and the starting model — ``tiny``'s fields,
    or a given model's weights and config — must be the checkpoint's); None = no files.
    ``threads``: torch threads on the CPU during the call.
    """
    import numpy as np

    from descentlab.core.seeding import resolve_device
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.rag.objective import RagObjectiveConfig

    objective = objective or RagObjectiveConfig()
    targets = as_corpus(corpus)
    full = targets
    if retrieval_corpus is not None:
        full = targets.extended(as_corpus(retrieval_corpus).docs)
    trainable = np.arange(len(full)) < len(targets)
    dev = resolve_device(device)
    named = isinstance(model, (str, os.PathLike))
    start = tiny_settings(tiny) if named and str(model) == "tiny" else {}
    with quiet_libraries(), torch_threads(dev, threads):
        if named:
            model, tokenizer = load_model_and_tokenizer(model, texts=full.texts, tiny=tiny,
                                                        seed=seed)
        elif tokenizer is None:
            raise InputError("a model object needs its tokenizer", where="tokenizer")
        # closed_book never retrieves: no index to build (a given one is still checked)
        need = objective.variant != "closed_book" or index is not None
        retr = retriever_for(full, index, retriever) if need else None
        return train_model(model, tokenizer, full, trainable, retr, objective, train_config,
                           out_dir=out_dir, resume=resume, device=dev, seed=seed,
                           settings=start)


def tiny_settings(tiny=None) -> dict[str, Any]:
    """``tiny_<field>`` of a :class:`~descentlab.lm.tiny.TinyLMConfig` (None: the default):
    with the seed and the documents, what makes a tiny model and its tokenizer, so what a
    resume of a tiny run must find unchanged (a changed dropout is named as such)."""
    from descentlab.lm.tiny import TinyLMConfig

    return {f"tiny_{k}": v for k, v in dataclasses.asdict(tiny or TinyLMConfig()).items()}


def start_fingerprint(model: Any) -> str:
    """SHA-256 of the model a run starts from: its parameters and buffers
    (:func:`~descentlab.core.training.state_fingerprint`) and its config (dropout…),
    whatever folder it was loaded from (a moved or copied folder is the same model).
    Hashing reads every weight once: under a second for 135 M float32 parameters."""
    import hashlib
    import json

    from descentlab.core.training import state_fingerprint

    cfg = model.config.to_dict() if hasattr(model, "config") else {}
    cfg = {k: v for k, v in cfg.items() if k not in ("_name_or_path", "transformers_version")}
    h = hashlib.sha256(state_fingerprint(model).encode())
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return h.hexdigest()


def train_model(model: Any, tokenizer: Any, corpus: Corpus, trainable, retriever, objective,
                train_config=None, *, out_dir: PathLike | None = None, resume: bool = False,
                device: Any = "cpu", seed: int = 0,
                settings: dict[str, Any] | None = None) -> RagTrainResult:
    """The training step of :func:`train` on prepared parts: ``corpus`` is what is
    retrievable, ``trainable`` (D,) bool the targets, ``retriever`` indexes ``corpus`` (None
    for ``closed_book``). ``model`` is the starting model (its :func:`start_fingerprint` and
    its tokenizer's fingerprint are resume settings); ``settings``: the caller's own that a resume must find unchanged,
    compared first (e.g. :func:`tiny_settings`)."""
    import hashlib

    import numpy as np

    from descentlab.core.training import TrainConfig
    from descentlab.core.training import train as train_loop
    from descentlab.lm.tiny import context_length, tokenizer_fingerprint
    from descentlab.rag.objective import RagData, suffix_loss

    tcfg = dataclasses.replace(train_config or TrainConfig(), seed=seed)
    # what a resume must match besides the TrainConfig: the caller's settings, the starting
    # model (before the loop loads the checkpoint into it; hashed only when there is an
    # output folder, so a checkpoint to compare) and its tokenizer (the experiment trains it on texts its config picks),
    # the objective, the data and the retriever (its kind and parameters; closed_book never
    # retrieves, so none)
    retr = None
    if retriever is not None and objective.variant != "closed_book":
        retr = {"kind": type(retriever).__name__, **dict(getattr(retriever, "params", {}))}
    settings = {**(settings or {}),
                "model": start_fingerprint(model) if out_dir is not None else None,
                "tokenizer": tokenizer_fingerprint(tokenizer) if out_dir is not None else None,
                "objective": dataclasses.asdict(objective), "corpus": corpus.fingerprint,
                "targets": hashlib.sha256(np.packbits(trainable)).hexdigest(),
                "retriever": retr}
    with quiet_libraries():
        data = RagData(corpus, trainable, tokenizer, retriever, objective, seed=seed,
                       max_length=context_length(model))
        res = train_loop(model, suffix_loss, data.batch_fn(), tcfg, out_dir, resume=resume,
                         settings=settings, device=device, desc=f"rag {objective.variant}")
    cache = data.cache
    return RagTrainResult(
        model=res.model, tokenizer=tokenizer, variant=objective.variant, steps=res.step,
        history=res.history, docs=len(corpus), targets_per_epoch=data.n_per_epoch,
        seconds=res.seconds, device=str(res.accelerator.device),
        retrieval_cache_hit_rate=cache.hits / max(1, cache.hits + cache.misses),
        out_dir=None if out_dir is None else Path(out_dir))


@dataclasses.dataclass
class RagEvalConfig:
    """How a model is evaluated: the context it reads and how much is scored."""

    k: int = option(2, "passages retrieved per query", min=1)
    context_tokens: int = option(96, "token budget of the passages (separators included)", min=1)
    max_docs: int = option(1000, "documents scored for perplexity (the first ones)", min=1)
    retriever: str = option("bm25", "retriever when no saved index is given", choices=RETRIEVERS)
    batch_size: int = option(64, "sequences per forward pass", min=1)

    def __post_init__(self) -> None:
        check_config(self)


@dataclasses.dataclass
class RagEvalResult:
    """Perplexity with and without retrieval, cloze QA (when probes are given), settings."""

    docs: int
    ppl_no_retrieval: float
    ppl_retrieval: float
    qa: dict[str, float]
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Flat JSON-able record (what ``rag eval`` prints and writes)."""
        return {"docs": self.docs, "ppl_no_retrieval": self.ppl_no_retrieval,
                "ppl_retrieval": self.ppl_retrieval, **self.qa, "settings": self.settings}


def _describe(obj: Any) -> str | None:
    if obj is None:
        return None
    return str(obj) if isinstance(obj, (str, os.PathLike)) else type(obj).__name__


def evaluate(model: Any, corpus: Corpus | PathLike | None = None, probes=None, *,
             tokenizer: Any = None, index: BM25Index | PathLike | None = None,
             config: RagEvalConfig | None = None, device: str = "cpu", seed: int = 0,
             threads: int | None = 1) -> RagEvalResult:
    """Perplexity of ``corpus`` suffixes with/without retrieval, and cloze QA on ``probes``.

    ``model``: a local model folder, or a model object with its ``tokenizer``. Retrieval:
    a saved ``index`` (its documents are the corpus when ``corpus`` is None; else the
    fingerprints must match) or a fresh ``config.retriever`` over ``corpus``. ``probes``: a
    JSONL path or :class:`~descentlab.rag.synthetic.Probe` list (see :func:`load_probes`).
    Every setting that shapes the numbers is recorded in ``settings``.
    """
    from descentlab.core.seeding import resolve_device
    from descentlab.lm.tiny import context_length, load_model_and_tokenizer
    from descentlab.rag import scoring as ev

    cfg = config or RagEvalConfig()
    if corpus is None and index is None:
        raise InputError("give a corpus or an index to evaluate on", where="corpus")
    idx = as_index(index) if index is not None else None
    docs_corpus = as_corpus(corpus) if corpus is not None else idx.corpus
    if isinstance(probes, (str, os.PathLike)):
        probe_list = ev.load_probes(probes)  # every input is checked before the model loads
    else:
        probe_list = list(probes) if probes is not None else None
    dev = resolve_device(device)
    with quiet_libraries(), torch_threads(dev, threads):
        retr = retriever_for(docs_corpus, idx, cfg.retriever)
        if isinstance(model, (str, os.PathLike)):
            model_obj, tokenizer = load_model_and_tokenizer(model)
        elif tokenizer is None:
            raise InputError("a model object needs its tokenizer", where="tokenizer")
        else:
            model_obj = model
        model_obj.to(dev)
        reader = ev.Reader(model_obj, tokenizer, k=cfg.k, budget=cfg.context_tokens,
                           batch_size=cfg.batch_size, device=str(dev),
                           max_length=context_length(model_obj))
        docs = list(range(len(docs_corpus)))[: cfg.max_docs]
        # every sequence is built and checked (InputError) before any is scored
        ppl_jobs = [ev.perplexity_job(reader, docs_corpus, docs, r, seed=seed)
                    for r in (None, retr)]
        qa_jobs = {name: ev.score_probes_job(reader, probe_list, r) for name, r in
                   (("no_retrieval", None), ("retrieval", retr))} if probe_list else {}
        ppl = [job() for job in ppl_jobs]
        qa: dict[str, float] = {}
        for name, job in qa_jobs.items():
            s = job()
            qa[f"qa_em_{name}"] = float(s["em"].mean())
            qa[f"qa_acc_{name}"] = float(s["candidate_acc"].mean())
    settings = {**dataclasses.asdict(cfg), "retriever": "bm25" if idx is not None
                else cfg.retriever, "model": _describe(model), "index": _describe(index),
                "corpus_fingerprint": docs_corpus.fingerprint, "seed": seed,
                "probes": _describe(probes) if probes is None or isinstance(
                    probes, (str, os.PathLike)) else f"{len(probe_list)} probes"}
    return RagEvalResult(docs=len(docs), ppl_no_retrieval=ppl[0], ppl_retrieval=ppl[1], qa=qa,
                         settings=settings)


@dataclasses.dataclass
class Query:
    """One search request: the text and what it must not return (ids)."""

    text: str
    exclude_docs: tuple[str, ...] = ()
    exclude_entities: tuple[str, ...] = ()


def load_queries(path: PathLike) -> list[Query]:
    """Queries from a file: JSONL (``.jsonl``: ``{query, exclude_doc?, exclude_entity?}``
    per line, each a string or a list of ids) or plain text (one query per non-empty
    line). Bad input names the file and line."""
    from descentlab.core.io import read_jsonl

    p = Path(path)
    out: list[Query] = []
    if p.suffix == ".jsonl":
        for lineno, obj in read_jsonl(p):
            where = f"{p}:{lineno}"
            if not isinstance(obj.get("query"), str) or not obj["query"].strip():
                raise InputError("field 'query' must be non-empty text", where=where)
            ex = {}
            for f in ("exclude_doc", "exclude_entity"):
                v = obj.get(f, [])
                v = [v] if isinstance(v, str) else v
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise InputError(f"field {f!r} must be an id or a list of ids", where=where)
                ex[f] = tuple(v)
            out.append(Query(obj["query"], ex["exclude_doc"], ex["exclude_entity"]))
    else:
        from descentlab.core.errors import require_file

        require_file(p)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text ({e.reason})", where=p) from None
        out = [Query(line.strip()) for line in lines if line.strip()]
    if not out:
        raise InputError("no queries in the file", where=p)
    return out


def search(index: BM25Index | PathLike, queries: Sequence[str | Query], k: int = 5,
           ) -> list[list]:
    """Top-k :class:`~descentlab.rag.retrieval.Hit` lists, one per query (text or
    :class:`Query` with its exclusions)."""
    idx = as_index(index)
    qs = [q if isinstance(q, Query) else Query(q) for q in queries]
    if not qs:
        raise InputError("no queries", where="queries")
    return idx.hits([q.text for q in qs], k, exclude_docs=[q.exclude_docs for q in qs],
                    exclude_entities=[q.exclude_entities for q in qs])


