"""The RAG objective: sequence layout, suffix-only loss, disjoint split, variants, determinism."""

import dataclasses

import numpy as np
import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.core.training import BatchContext
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.rag.objective import (
    VARIANTS,
    RagData,
    RagObjectiveConfig,
    build_sequence,
    collate,
    split_documents,
    suffix_loss,
)
from descentlab.rag.retrieval import BM25Index
from descentlab.rag.synthetic import make_biographies

CTX = BatchContext(rank=0, world_size=1, batch_size=6, grad_accum=1, seed=0,
                   device=torch.device("cpu"))


@pytest.fixture(scope="module")
def setup():
    bios = make_biographies(24, 3, seed=0)
    corpus = bios.corpus()
    trainable = np.array([int(d.entity[1:]) < 18 for d in corpus])  # 6 retrieval-only people
    model, tok = build_tiny(corpus.texts, TinyLMConfig(n_layer=1, n_head=2, n_embd=16,
                                                       n_positions=200))
    return corpus, trainable, model, tok, BM25Index(corpus)


def _data(setup, **kw):
    corpus, trainable, _, tok, idx = setup
    return RagData(corpus, trainable, tok, idx, RagObjectiveConfig(**kw), seed=3,
                   max_length=200)


def test_build_sequence_layout_and_budget():
    ids, start = build_sequence([[10, 11, 12], [20, 21, 22]], [1, 2], [3, 4, 5], budget=6,
                                bos=0, sep=9)
    # passage 1 + sep = 4 tokens, passage 2 truncated to the 2 that fit (1 token + sep)
    assert ids == [0, 10, 11, 12, 9, 20, 9, 1, 2, 3, 4, 5]
    assert start == 9 and ids[start:] == [3, 4, 5]
    assert build_sequence([], [1], [2], budget=8, bos=None, sep=9) == ([1, 2], 1)


def test_loss_covers_exactly_the_suffix(setup):
    _, _, model, tok, _ = setup
    batch = collate([([0, 5, 6, 7, 8, 9], 4), ([0, 5, 6, 7], 2)], tok.pad_token_id)
    assert batch["response_mask"].tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 0, 0]]
    loss, metrics = suffix_loss(model, batch)
    with torch.no_grad():
        logp = model(input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    ids = batch["input_ids"]
    by_hand = [logp[0, 3, ids[0, 4]], logp[0, 4, ids[0, 5]], logp[1, 1, ids[1, 2]],
               logp[1, 2, ids[1, 3]]]
    assert loss.item() == pytest.approx(-float(sum(by_hand)) / 4, rel=1e-5)
    assert metrics["suffix_tokens"].item() == 2.0
    # changing a context token's *label* cannot change the loss: only predictions of suffix
    # tokens count (the context changes them only through attention)
    b2 = {k: v.clone() for k, v in batch.items()}
    b2["input_ids"][0, 5] = (ids[0, 5] + 1) % len(tok)  # a suffix token
    assert suffix_loss(model, b2)[0].item() != pytest.approx(loss.item())


def test_split_is_disjoint_and_stratified(setup):
    corpus, trainable, *_ = setup
    retr = split_documents(corpus, trainable, 0.34, np.random.default_rng(0))
    assert not (retr & ~trainable).any()
    for members in corpus.entity_members:
        if trainable[members].all():
            assert retr[members].sum() == 1  # round(0.34 * 3) = 1, targets keep 2
    data = _data(setup, variant="split", k=2)
    for epoch in range(3):
        plan, splits, passages = data.epoch_data(epoch)
        targets = set(plan.targets.tolist())
        assert not targets & set(np.flatnonzero(plan.allowed).tolist())
        assert not targets & set(passages.ravel().tolist())  # never retrieve a target
        assert trainable[plan.targets].all()
        assert ((splits >= 1) & (splits < [len(data.doc_ids[t]) for t in plan.targets])).all()
    assert np.array_equal(data.epoch_data(0)[0].targets, data.epoch_data(2)[0].targets)


def test_resplit_changes_the_split_each_epoch(setup):
    data = _data(setup, variant="resplit", k=1)
    t0, t1 = data.epoch_data(0)[0].targets, data.epoch_data(1)[0].targets
    split0 = _data(setup, variant="split", k=1).epoch_data(5)[0].targets
    assert np.array_equal(t0, split0)  # resplit starts from split's (fixed) split
    assert len(t0) == len(t1) == data.n_per_epoch
    assert set(t0.tolist()) != set(t1.tolist())
    ever_target = set()
    for e in range(24):
        plan, _, passages = data.epoch_data(e)
        assert not set(plan.targets.tolist()) & set(passages.ravel().tolist())
        ever_target |= set(plan.targets.tolist())
    corpus, trainable, *_ = setup
    assert ever_target == set(np.flatnonzero(trainable).tolist())


@pytest.mark.parametrize("variant, exclude", [("full", "doc"), ("leave_one_out", "doc"),
                                              ("leave_one_out", "entity"),
                                              ("closed_book", "doc")])
def test_variant_retrieval_pools(setup, variant, exclude):
    corpus, trainable, *_ = setup
    data = _data(setup, variant=variant, exclude=exclude, k=2)
    plan, _, passages = data.epoch_data(0)
    assert set(plan.targets.tolist()) == set(np.flatnonzero(trainable).tolist())
    if variant == "closed_book":
        assert passages is None
        return
    own = passages == plan.targets[:, None]
    same_entity = corpus.entity_codes[passages] == corpus.entity_codes[plan.targets][:, None]
    if variant == "full":
        assert own.any()  # the target itself is retrievable, as in the note
    elif exclude == "doc":
        assert not own.any() and same_entity.any()  # siblings still come back
    else:
        assert not same_entity.any()


def test_examples_are_deterministic_and_end_with_the_suffix(setup):
    a, b = _data(setup, variant="leave_one_out", k=2), _data(setup, variant="leave_one_out", k=2)
    fa, fb = a.batch_fn(), b.batch_fn()
    for step in (0, 5, 11):  # 11 crosses into the second epoch (54 targets / 6 per batch)
        x, y = fa(step, 0, CTX), fb(step, 0, CTX)
        assert all(torch.equal(x[k], y[k]) for k in x)
    plan, splits, passages = a.epoch_data(1)
    ids, start = a.example(1, 4)
    doc = a.doc_ids[plan.targets[4]]
    assert ids[start:] == doc[splits[4]:] and ids[start - splits[4]: start] == doc[:splits[4]]
    assert ids[0] == a.bos and a.sep in ids[:start]
    assert a.cache.misses > 0 and set(a.cache.table)  # retrievals were cached


def test_config_and_length_errors(setup):
    with pytest.raises(InputError, match="RagObjectiveConfig.variant: unknown value 'nope'"):
        RagObjectiveConfig(variant="nope")
    with pytest.raises(InputError, match="RagObjectiveConfig.split_ratio: must be < 1"):
        RagObjectiveConfig(split_ratio=1.0)
    assert set(VARIANTS) == {"closed_book", "full", "leave_one_out", "split", "resplit"}
    corpus, trainable, _, tok, idx = setup
    # refused before any training, naming the longest target document; the bound (an upper
    # one, reached when the longest document retrieves the longest ones): [bos] + passages (at
    # most the budget, at most k documents and separators) + the whole
    # target document
    n = [len(t) for t in tok(corpus.texts, add_special_tokens=False)["input_ids"]]
    longest = max(np.flatnonzero(trainable), key=lambda d: n[d])
    for k, budget in ((2, 120), (3, 20)):
        cfg = RagObjectiveConfig(variant="full", k=k, context_tokens=budget)
        need = 1 + min(budget, k * (max(n) + 1)) + n[longest]
        with pytest.raises(InputError, match=f"up to {need} tokens.*lower context_tokens") as e:
            RagData(corpus, trainable, tok, idx, cfg, max_length=need - 1)
        assert e.value.where == f"document {corpus[int(longest)].id!r}"
        data = RagData(corpus, trainable, tok, idx, cfg, max_length=need)
        assert max(len(data.example(ep, j)[0]) for ep in range(2)
                   for j in range(data.n_per_epoch)) <= need
    closed = RagObjectiveConfig(variant="closed_book", context_tokens=120)  # no passages
    RagData(corpus, trainable, tok, idx, closed, max_length=1 + n[longest])
    with pytest.raises(InputError, match="lower context_tokens"):
        RagData(corpus, trainable, tok, idx, closed, max_length=n[longest])
    cfg = dataclasses.replace(RagObjectiveConfig(), variant="full")
    with pytest.raises(InputError, match="no trainable"):
        RagData(corpus, np.zeros(len(corpus), bool), tok, idx, cfg)


def test_rag_training_resumes_exactly(setup, tmp_path):
    from descentlab.core.training import TrainConfig, train
    from descentlab.lm.tiny import build_tiny_model

    corpus, trainable, _, tok, idx = setup
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, log_every=1, seed=1)
    tiny = TinyLMConfig(n_layer=1, n_head=2, n_embd=16, n_positions=200)

    def run(out, stop=None, resume=False):
        data = RagData(corpus, trainable, tok, idx, RagObjectiveConfig(variant="resplit", k=1),
                       seed=3, max_length=200)
        model = build_tiny_model(tiny, tok, seed=0)
        return train(model, suffix_loss, data.batch_fn(), cfg, out, resume=resume,
                     stop_at_step=stop).model

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop=2)
    resumed = run(tmp_path / "b", resume=True)
    for (n, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), n
