"""BM25 retrieval: scores equal bm25s', exact exclusion, save/load, cache, bad k."""

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus, Document
from descentlab.rag.retrieval import (
    BM25Index,
    RetrievalCache,
    bm25_tokenize,
    exclusion,
    topk_masked,
)
from descentlab.rag.synthetic import make_biographies, make_probes


@pytest.fixture(scope="module")
def world():
    bios = make_biographies(60, 4, seed=0)
    corpus = bios.corpus()
    return bios, corpus, BM25Index(corpus)


def test_scores_match_bm25s_and_hand_computed():
    docs = ["apple banana", "apple apple cherry", "durian"]
    c = Corpus(Document(str(i), t, str(i)) for i, t in enumerate(docs))
    idx = BM25Index(c, k1=1.5, b=0.75, method="lucene")
    s = idx.score(["apple"])[0]
    # Lucene BM25 (bm25s): idf = ln(1 + (N - df + .5)/(df + .5)),
    # tf part = tf / (tf + k1 (1 - b + b |d| / avgdl)); |d| = 2, 3, 1 words -> avgdl = 2
    n, df, avgdl = 3, 2, 2.0
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))

    def tfp(tf, dl):
        return tf / (tf + 1.5 * (0.25 + 0.75 * dl / avgdl))

    assert s == pytest.approx([idf * tfp(1, 2), idf * tfp(2, 3), 0.0], rel=1e-5)
    ref = idx.bm25.get_scores(bm25_tokenize("apple cherry", idx.stopwords))
    assert np.allclose(idx.score(["apple cherry"])[0], ref)
    r = idx.search(["cherry apple"], k=2)
    assert r.indices.tolist() == [[1, 0]]


def test_batched_search_equals_one_by_one(world):
    bios, corpus, idx = world
    qs = [p.prompt for p in make_probes(bios.people[:20])]
    batched = idx.search(qs, 5, batch_size=7)
    for q, row in zip(qs, batched.indices):
        assert idx.search([q], 5).indices[0].tolist() == row.tolist()


@pytest.mark.parametrize("mode", ["doc", "entity"])
def test_exclusion_never_returns_excluded(world, mode):
    bios, corpus, idx = world
    docs = np.arange(len(corpus))
    queries = corpus.texts  # each document's own text: it would rank itself first
    excl = exclusion(corpus, docs, mode)
    k = len(corpus) - corpus.max_docs_per_entity  # as deep as exclusion allows
    res = idx.search(queries, k, exclude=excl)
    for d, row in zip(docs, res.indices):
        banned = {d} if mode == "doc" else set(corpus.entity_members[corpus.entity_codes[d]])
        assert not banned & set(row.tolist())
        assert len(set(row.tolist())) == k
    plain = idx.search(queries[:50], 1).indices[:, 0]
    assert (plain == docs[:50]).all()  # without exclusion a document finds itself
    if mode == "doc":  # ... and with it, a sibling of the same person comes first
        sib = idx.search(queries[:50], 1, exclude=excl[:50]).indices[:, 0]
        assert (corpus.entity_codes[sib] == corpus.entity_codes[:50]).all()


def test_allowed_pool_is_respected(world):
    _, corpus, idx = world
    allowed = np.zeros(len(corpus), bool)
    allowed[::3] = True
    res = idx.search(corpus.texts[:40], 4, allowed=allowed)
    assert allowed[res.indices].all()


def test_topk_masked_ties_and_order():
    s = np.array([[1.0, 3.0, 3.0, 2.0, 0.5]], dtype=np.float32)
    r = topk_masked(s.copy(), 3, exclude=np.array([[1, -1]]))
    assert r.indices.tolist() == [[2, 3, 0]]
    assert r.scores.tolist() == [[3.0, 2.0, 1.0]]


def test_k_too_large_is_input_error(world):
    _, corpus, idx = world
    with pytest.raises(InputError, match="larger than the 240 retrievable"):
        idx.search(["x"], len(corpus) + 1)
    excl = exclusion(corpus, [0], "entity")
    with pytest.raises(InputError, match="left after exclusion"):
        idx.search(["x"], len(corpus) - 3, exclude=excl)
    with pytest.raises(InputError, match="k must be"):
        idx.search(["x"], 0)


def test_save_load_roundtrip(world, tmp_path):
    bios, corpus, idx = world
    path = idx.save(tmp_path / "idx")
    again = BM25Index.load(path)
    qs = [p.prompt for p in make_probes(bios.people[:10])]
    a, b = idx.search(qs, 6), again.search(qs, 6)
    assert np.array_equal(a.indices, b.indices) and np.allclose(a.scores, b.scores)
    assert again.corpus.ids == corpus.ids
    idx.save(path)  # overwriting an index folder works
    with pytest.raises(InputError, match="not a descentlab index"):
        BM25Index.load(tmp_path)


def test_cache_searches_each_key_once():
    cache, calls = RetrievalCache(), []

    def search(rows):
        calls.append(rows.tolist())
        return np.stack([rows * 10, rows * 10 + 1], 1)

    keys = np.array([[1, 2, 0], [3, 4, 0], [1, 2, 0]])
    out = cache.lookup(keys, search)
    assert out.tolist() == [[0, 1], [10, 11], [0, 1]]
    assert calls == [[0, 1]]  # the repeated key was not searched
    out2 = cache.lookup(np.array([[3, 4, 0], [5, 5, 1]]), search)
    assert out2.tolist() == [[10, 11], [10, 11]] and calls[-1] == [1]
    assert (cache.hits, cache.misses) == (2, 3)
