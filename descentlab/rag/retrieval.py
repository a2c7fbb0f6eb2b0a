"""Retrieval over a :class:`~descentlab.rag.corpus.Corpus`: BM25 (bm25s) and optional dense.

BM25 (Robertson & Zaragoza 2009; Lucene variant, k1 in [1.2, 2], b ~ 0.75) is indexed by
``bm25s``: every (token, document) score is computed once at index time into a sparse
(V, D) matrix S. A batch of queries is then one sparse product

    scores = C @ S                  # (Q, V) query token counts @ (V, D) -> (Q, D)

(bm25s' own per-query sum, batched), followed by masking and ``argpartition``. Exclusion is
exact: the scores of excluded documents (the query's own document, or every document of its
entity, for leave-one-out training; REALM/RETRO practice) are set to -inf before the top-k,
and a document outside the ``allowed`` pool (the retrieval half of a split) likewise.

The dense retriever (:mod:`descentlab.rag.dense`: sentence-transformers embeddings + faiss
inner-product search, from a local model folder; the ``dense`` extra) asks faiss for
``k + max_excluded`` hits and drops the excluded ones, which is exact for the same reason.

:class:`RetrievalCache` memoises retrievals used in training (keyed by the caller).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus, load_jsonl

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default token pattern
INDEX_META = "descentlab_index.json"  # marks a folder as an index of ours; written last


def _previous_index_files(path: Path) -> set[str]:
    """Plain file names an earlier index in ``path`` listed in its metadata (else none)."""
    try:
        meta = json.loads((path / INDEX_META).read_text(encoding="utf-8"))
        names = meta.get("files", []) if isinstance(meta, dict) else []
    except (OSError, ValueError, RecursionError):
        return set()
    return {n for n in names if isinstance(n, str) and n and n == Path(n).name
            and not n.startswith(".") and n != INDEX_META and (path / n).is_file()}


class Retrieved(NamedTuple):
    """Top-k hits: ``indices`` (Q, k) int64 document positions, ``scores`` (Q, k) float32."""

    indices: np.ndarray
    scores: np.ndarray


def _bm25s():
    """Import bm25s (lazily: it is only needed to build, save and load an index).

    Nothing global is changed. bm25s imports JAX at import time when JAX is installed (it is
    not a dependency of ours; we never use bm25s' JAX top-k, scoring is the sparse product
    above); with a CUDA build of JAX that initialises it on the GPU, so users who have one
    set ``JAX_PLATFORMS=cpu`` themselves.
    """
    import bm25s

    return bm25s


def _stopwords() -> frozenset[str]:
    _bm25s()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def bm25_tokenize(text: str, stopwords: frozenset[str]) -> list[str]:
    """Lowercased ``\\w\\w+`` words minus English stop words (what bm25s.tokenize does)."""
    return [t for t in TOKEN_PATTERN.findall(text.lower()) if t not in stopwords]


# Exclusion granularity for leave-one-out: name -> (corpus, query doc indices (Q,)) ->
# padded excluded doc indices (Q, m) with -1 for "none".
def _exclude_none(corpus: Corpus, docs: np.ndarray) -> np.ndarray:
    return np.full((len(docs), 0), -1, dtype=np.int64)


def _exclude_doc(corpus: Corpus, docs: np.ndarray) -> np.ndarray:
    return np.asarray(docs, dtype=np.int64).reshape(-1, 1)  # (Q, 1)


def _exclude_entity(corpus: Corpus, docs: np.ndarray) -> np.ndarray:
    m = corpus.max_docs_per_entity
    out = np.full((len(docs), m), -1, dtype=np.int64)
    for row, d in enumerate(np.asarray(docs)):
        members = corpus.entity_members[corpus.entity_codes[d]]
        out[row, : len(members)] = members
    return out


EXCLUSIONS = {"none": _exclude_none, "doc": _exclude_doc, "entity": _exclude_entity}


def exclusion(corpus: Corpus, docs: Sequence[int] | np.ndarray, mode: str) -> np.ndarray:
    """Padded (Q, m) array of documents each query must not retrieve (``-1`` = padding)."""
    if mode not in EXCLUSIONS:
        raise InputError(f"unknown exclusion {mode!r}; choose from {list(EXCLUSIONS)}")
    return EXCLUSIONS[mode](corpus, np.asarray(docs, dtype=np.int64))


def _check_k(k: int, n_docs: int, exclude: np.ndarray | None, allowed: np.ndarray | None) -> None:
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}", where="k")
    pool = n_docs if allowed is None else int(allowed.sum())
    if k > pool:
        raise InputError(f"k={k} is larger than the {pool} retrievable documents", where="k")
    if exclude is not None and exclude.size:
        valid = exclude >= 0
        if allowed is not None:
            valid &= allowed[np.where(valid, exclude, 0)]
        worst = int(valid.sum(axis=1).max())
        if k > pool - worst:
            raise InputError(f"k={k} is larger than the {pool - worst} documents left after "
                             "exclusion", where="k")


def topk_masked(scores: np.ndarray, k: int, exclude: np.ndarray | None = None,
                allowed: np.ndarray | None = None) -> Retrieved:
    """Exact top-k of ``scores`` (Q, D) with per-row ``exclude`` (Q, m) and a global mask.

    Excluded / disallowed entries get -inf and can never be returned (k is checked against
    what is left). Ties break towards the lower document index. Mutates ``scores``.
    """
    q, d = scores.shape
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    if exclude is not None and exclude.size:
        rows = np.repeat(np.arange(q), exclude.shape[1])  # (Q*m,)
        cols = exclude.reshape(-1)  # (Q*m,)
        keep = cols >= 0
        scores[rows[keep], cols[keep]] = -np.inf
    if k < d:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k) unordered
    else:
        part = np.broadcast_to(np.arange(d), (q, d)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)  # score desc, then index asc
    idx = np.take_along_axis(part, order, axis=1)
    return Retrieved(idx.astype(np.int64), np.take_along_axis(part_scores, order, axis=1))


# The BM25 variants bm25s implements (its ``method`` argument): CLI choices come from here.
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


class Hit(NamedTuple):
    """One search result: ``rank`` (1 = best), document position ``index``, its ``id``,
    ``entity`` and ``text``, and the BM25 ``score``."""

    rank: int
    index: int
    id: str
    entity: str
    score: float
    text: str


class BM25Index:
    """A bm25s index over a corpus with batched, exclusion-exact top-k search.

    ``method`` is a bm25s variant (:data:`BM25_METHODS`); ``k1`` (term-frequency
    saturation, typically 1.2-2.0) and ``b`` (length normalisation, 0-1, typically 0.75) as
    in Lucene. :meth:`search` is the batched hot path (document positions, padded
    exclusions); :meth:`hits` is the by-id convenience; :meth:`save` / :meth:`load` keep an
    index as a folder, with the corpus :attr:`~descentlab.rag.corpus.Corpus.fingerprint`.
    """

    def __init__(self, corpus: Corpus, *, k1: float = 1.5, b: float = 0.75,
                 method: str = "lucene", _retriever=None):
        if method not in BM25_METHODS:
            raise InputError(f"unknown BM25 method {method!r}; choose from "
                             f"{', '.join(BM25_METHODS)}", where="method")
        if not k1 >= 0:
            raise InputError(f"must be >= 0, got {k1}", where="k1")
        if not 0 <= b <= 1:
            raise InputError(f"must be in [0, 1], got {b}", where="b")
        bm25s = _bm25s()
        self.corpus = corpus
        self.params = {"k1": k1, "b": b, "method": method}
        self.stopwords = _stopwords()
        if _retriever is None:
            tokens = [bm25_tokenize(t, self.stopwords) for t in corpus.texts]
            _retriever = bm25s.BM25(k1=k1, b=b, method=method)
            _retriever.index(tokens, show_progress=False)
        self.bm25 = _retriever
        self._prepare()

    def _prepare(self) -> None:
        import scipy.sparse as sp

        s = self.bm25.scores
        self.vocab: dict[str, int] = self.bm25.vocab_dict
        n_vocab = len(s["indptr"]) - 1
        # bm25s stores per token the postings (doc indices, scores): a CSR (V, D) matrix.
        self.matrix = sp.csr_matrix((s["data"], s["indices"], s["indptr"]),
                                    shape=(n_vocab, s["num_docs"]))
        self.nonoccurrence = getattr(self.bm25, "nonoccurrence_array", None)

    def __len__(self) -> int:
        return len(self.corpus)

    def encode_queries(self, queries: Sequence[str]):
        """Query token counts as a CSR (Q, V) matrix (unknown words dropped)."""
        import scipy.sparse as sp

        indptr = [0]
        indices: list[int] = []
        vocab = self.vocab
        for q in queries:
            ids = [vocab[t] for t in bm25_tokenize(q, self.stopwords) if t in vocab]
            indices.extend(ids)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)
        c = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                          shape=(len(queries), self.matrix.shape[0]))
        c.sum_duplicates()  # repeated words count twice, as in bm25s
        return c

    def score(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 scores (Q, D) float32 of every document for every query."""
        c = self.encode_queries(queries)
        out = (c @ self.matrix).toarray().astype(np.float32, copy=False)  # (Q, D)
        if self.nonoccurrence is not None:
            out += (c @ self.nonoccurrence.astype(np.float32))[:, None]
        return out

    def search(self, queries: Sequence[str], k: int, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None, batch_size: int = 256) -> Retrieved:
        """Top-k documents per query, never returning ``exclude`` (Q, m) or ``~allowed`` (D,)."""
        _check_k(k, len(self), exclude, allowed)
        idx = np.empty((len(queries), k), dtype=np.int64)
        sc = np.empty((len(queries), k), dtype=np.float32)
        for s in range(0, len(queries), batch_size):
            e = s + batch_size
            block = self.score(queries[s:e])
            res = topk_masked(block, k, None if exclude is None else exclude[s:e], allowed)
            idx[s:e], sc[s:e] = res
        return Retrieved(idx, sc)

    def hits(self, queries: Sequence[str], k: int = 5, *,
             exclude_docs: Sequence[Sequence[str]] | None = None,
             exclude_entities: Sequence[Sequence[str]] | None = None) -> list[list[Hit]]:
        """Top-k :class:`Hit` lists per query, excluding documents by id and/or every
        document of the given entities (one sequence of ids per query, or None).

        An unknown id raises InputError naming ``exclude_docs`` / ``exclude_entities``.
        """
        rows: list[list[int]] = [[] for _ in queries]
        for name, given in (("exclude_docs", exclude_docs), ("exclude_entities", exclude_entities)):
            if given is None:
                continue
            if len(given) != len(queries):
                raise InputError(f"{len(given)} exclusion lists for {len(queries)} queries",
                                 where=name)
            for r, ids in enumerate(given):
                for i in ids:
                    if name == "exclude_docs":
                        if i not in self.corpus.index_of:
                            raise InputError(f"no document with id {i!r} in the index",
                                             where=name)
                        rows[r].append(self.corpus.index_of[i])
                    else:
                        docs = self.corpus.docs_of(i)
                        if not docs:
                            raise InputError(f"no entity {i!r} in the index", where=name)
                        rows[r].extend(docs)
        width = max((len(r) for r in rows), default=0)
        exclude = np.full((len(queries), width), -1, dtype=np.int64)  # (Q, m), -1 = none
        for r, docs in enumerate(rows):
            exclude[r, : len(docs)] = docs
        res = self.search(list(queries), k, exclude=exclude if width else None)
        docs = self.corpus.docs
        return [[Hit(n + 1, int(d), docs[d].id, docs[d].entity, float(s), docs[d].text)
                 for n, (d, s) in enumerate(zip(row, srow))]
                for row, srow in zip(res.indices, res.scores)]

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the indexed corpus."""
        return self.corpus.fingerprint

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the index (bm25s files), the corpus and parameters into folder ``path``.

        Never destroys what is there. ``path`` must be new, empty or an earlier index or
        output of ours; another non-empty folder is refused (InputError naming it) unless
        ``overwrite``, and a file always is. The files are built in a temp folder inside
        ``path`` and moved in one by one (each rename atomic); :data:`INDEX_META` is removed
        first and written last, so a half-replaced folder never loads as an index. Files of
        an earlier index that this one lacks are removed; files of other names are kept.
        """
        import tempfile

        from descentlab.core.io import write_json
        from descentlab.core.outputs import check_folder

        path = check_folder(path, overwrite=overwrite, recognise=(INDEX_META,),
                            what="index folder")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".descentlab-index-", dir=path))
        try:
            self.bm25.save(tmp, show_progress=False)
            self.corpus.to_jsonl(tmp / "documents.jsonl")
            files = sorted(f.name for f in tmp.iterdir() if f.is_file())
            for name in (*files, INDEX_META):
                if (path / name).is_dir() or ((path / name).exists()
                                              and not (path / name).is_file()):
                    raise InputError(f"{name!r} in the index folder is not a file; "
                                     "refusing to replace it", where=path)
            old = _previous_index_files(path)
            (path / INDEX_META).unlink(missing_ok=True)
            for name in old - set(files):
                (path / name).unlink(missing_ok=True)
            for name in files:
                os.replace(tmp / name, path / name)
            write_json(path / INDEX_META, {"kind": "bm25", "params": self.params,
                                           "docs": len(self.corpus),
                                           "fingerprint": self.fingerprint, "files": files})
        except BaseException:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BM25Index:
        """Read an index written by :meth:`save`; a folder that is not one is an InputError."""
        bm25s = _bm25s()

        path = Path(path)
        from descentlab.core.io import read_json

        meta_file = path / INDEX_META
        if not meta_file.is_file():
            raise InputError(f"not a descentlab index folder (no {INDEX_META})", where=path)
        meta = read_json(meta_file)
        params = meta.get("params") if isinstance(meta, dict) else None
        if (not isinstance(params, dict) or set(params) != {"k1", "b", "method"}
                or not all(isinstance(params[k], (int, float)) and not isinstance(params[k], bool)
                           for k in ("k1", "b")) or not isinstance(params["method"], str)):
            raise InputError("field 'params' must hold numbers k1, b and a method name",
                             where=meta_file)
        corpus = load_jsonl(path / "documents.jsonl")
        try:
            retriever = bm25s.BM25.load(path, show_progress=False)
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"cannot read the bm25s files ({type(e).__name__}: {e})",
                             where=path) from None
        if retriever.scores["num_docs"] != len(corpus):
            raise InputError("index and documents.jsonl disagree on the number of documents",
                             where=path)
        saved = meta.get("fingerprint")  # absent in indexes saved before fingerprints
        if saved is not None and saved != corpus.fingerprint:
            raise InputError("documents.jsonl is not the corpus this index was built from "
                             "(fingerprint differs)", where=path)
        try:
            return cls(corpus, **params, _retriever=retriever)
        except InputError as e:  # a bad method / k1 / b in the metadata: name the file
            raise InputError(f"field 'params.{e.where}': {e.message}", where=meta_file) from None


def dense_index(corpus: Corpus, **options):
    """A :class:`~descentlab.rag.dense.DenseIndex` (imported only when asked for)."""
    from descentlab.rag.dense import DenseIndex

    return DenseIndex(corpus, **options)


def check_index_corpus(index, corpus: Corpus, where: str = "index") -> None:
    """InputError (one line, naming ``where``) unless ``index`` was built from ``corpus``
    (same documents in the same order: equal fingerprints)."""
    have, want = index.corpus.fingerprint, corpus.fingerprint
    if have != want:
        raise InputError(
            f"the index was built from another corpus ({len(index.corpus)} documents, "
            f"fingerprint {have[:12]}; this corpus: {len(corpus)} documents, {want[:12]}): "
            "rebuild the index from this corpus", where=where)


# Retrievers by name: (corpus, **options) -> an object with .search(queries, k, ...).
RETRIEVERS = {"bm25": BM25Index, "dense": dense_index}


def build_retriever(name: str, corpus: Corpus, **options):
    """A retriever from :data:`RETRIEVERS` (``bm25`` default; ``dense`` needs the extra)."""
    if name not in RETRIEVERS:
        raise InputError(f"unknown retriever {name!r}; choose from {list(RETRIEVERS)}",
                         where="retriever")
    return RETRIEVERS[name](corpus, **options)


class RetrievalCache:
    """Memoised retrievals: integer keys (N, K) -> document indices (N, k).

    The training objective keys by ``(document, split point, pool id)`` so a repeated
    ``(target, prefix)`` in a later epoch (or after ``--resume``) costs no search. Saved as
    ``.npz`` (atomic).
    """

    def __init__(self) -> None:
        self.table: dict[tuple[int, ...], np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, keys: np.ndarray, search) -> np.ndarray:
        """Indices (N, k) for ``keys`` (N, K); ``search(missing_rows) -> (M, k)`` fills gaps."""
        tkeys = [tuple(int(x) for x in row) for row in keys]
        first: dict[tuple[int, ...], int] = {}
        for i, t in enumerate(tkeys):
            if t not in self.table:
                first.setdefault(t, i)
        missing = list(first.values())  # rows whose key is new (each new key once)
        self.hits += len(tkeys) - len(missing)
        self.misses += len(missing)
        if missing:
            found = search(np.asarray(missing, dtype=np.int64))
            for row, i in enumerate(missing):
                self.table[tkeys[i]] = found[row]
        return np.stack([self.table[t] for t in tkeys]) if tkeys else np.empty((0, 0), np.int64)

    def save(self, path: str | os.PathLike) -> None:
        from descentlab.core.io import atomic_write

        keys = np.array(list(self.table), dtype=np.int64)
        vals = np.stack(list(self.table.values())) if self.table else np.empty((0, 0), np.int64)
        with atomic_write(path, "wb") as f:
            np.savez(f, keys=keys, values=vals)

    def load(self, path: str | os.PathLike) -> None:
        data = np.load(path)
        for key, val in zip(data["keys"], data["values"]):
            self.table[tuple(int(x) for x in key)] = val
