"""Evaluation: teacher-forced EM equals greedy decoding, log-probs, ratios, recall@k."""

import numpy as np
import pytest
import torch

from descentlab.lm.logprobs import sequence_logps
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.rag import scoring as ev
from descentlab.rag.corpus import Corpus, Document
from descentlab.rag.objective import collate
from descentlab.rag.retrieval import BM25Index
from descentlab.rag.synthetic import make_biographies, make_probes


@pytest.fixture(scope="module")
def reader():
    bios = make_biographies(12, 2, seed=1)
    corpus = bios.corpus()
    model, tok = build_tiny(corpus.texts, TinyLMConfig(n_layer=1, n_head=2, n_embd=16,
                                                       n_positions=200), seed=2)
    # make the random model opinionated so greedy paths are not ties
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)
    return ev.Reader(model, tok, k=1, budget=40, batch_size=5), bios, corpus


def test_continuation_tokens_concatenate_exactly(reader):
    r, bios, _ = reader
    p, cont = r.continuation("Ada Abbott was born on", "March 3, 1990")
    assert p + cont == r.encode(["Ada Abbott was born on March 3, 1990."])[0]
    assert len(cont) == 5  # March 3 , 1990 .


def test_teacher_forced_em_equals_greedy_decoding(reader):
    r, bios, corpus = reader
    model = r.model
    seqs, agree = [], []
    for d in range(6):
        x = r.encode([corpus[d].text])[0][:12]
        # build a sequence whose continuation IS the model's greedy path, and one that is not
        ids = [r.tokenizer.bos_token_id] + x[:6]
        with torch.no_grad():
            for _ in range(3):
                nxt = model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item()
                ids.append(nxt)
        seqs.append((ids, 7))
        agree.append(True)
        wrong = ids[:-1] + [(ids[-1] + 1) % len(r.tokenizer)]
        seqs.append((wrong, 7))
        agree.append(False)
    logp, count, greedy = r.score(seqs)
    assert greedy.tolist() == agree
    assert (count == 3).all()
    batch = collate(seqs, r.tokenizer.pad_token_id)
    ref = sequence_logps(model, batch["input_ids"], batch["attention_mask"],
                            batch["response_mask"]).sum.detach().numpy()
    assert np.allclose(logp, ref, atol=1e-4)


def test_perplexity_matches_hand_computed_nll(reader):
    r, _, corpus = reader
    docs = [0, 3, 5]
    ppl = ev.perplexity(r, corpus, docs, None, seed=4)
    ids = r.encode([corpus[d].text for d in docs])
    splits = np.random.default_rng([4, 104729]).integers(1, [len(x) for x in ids])
    seqs = [([r.tokenizer.bos_token_id] + x, 1 + i) for x, i in zip(ids, splits)]
    logp, count, _ = r.score(seqs)
    assert ppl == pytest.approx(float(np.exp(-logp.sum() / count.sum())), rel=1e-6)
    with_r = ev.perplexity(r, corpus, docs, BM25Index(corpus), seed=4)
    assert with_r != pytest.approx(ppl)  # the context changes the prediction


def test_score_probes_shapes_and_probabilities(reader):
    r, bios, corpus = reader
    probes = make_probes(bios.people[:3], n_candidates=4)
    s = ev.score_probes(r, probes, BM25Index(corpus))
    assert set(s) == {"em", "em_original", "candidate_acc", "p_answer", "p_original"}
    assert all(v.shape == (len(probes),) for v in s.values())
    assert ((0 < s["p_answer"]) & (s["p_answer"] < 1)).all()
    assert np.array_equal(s["em"], s["em_original"])  # not counterfactual: same value


def test_counterfactual_summary_by_hand():
    s = {"em": np.array([1.0, 0.0, 0.0]), "em_original": np.array([0.0, 1.0, 0.0]),
         "p_answer": np.array([0.6, 0.1, 0.2]), "p_original": np.array([0.2, 0.3, 0.2])}
    out = ev.counterfactual_summary(s)
    assert out["counterfactual_follow_rate"] == pytest.approx(1 / 3)
    assert out["counterfactual_memory_rate"] == pytest.approx(1 / 3)
    assert out["memorisation_ratio"] == pytest.approx((0.25 + 0.75 + 0.5) / 3)


def test_recall_at_k():
    c = Corpus([Document("a", "zebra stripes savanna", "Z"), Document("b", "lion mane savanna",
                                                                     "L"),
                Document("c", "zebra herd water", "Z")])
    idx = BM25Index(c)
    from descentlab.rag.synthetic import Probe

    probes = [Probe("Z", "", "zebra", "", "", ("",)), Probe("L", "", "water herd", "", "", ("",))]
    assert ev.recall_at_k(idx, probes, 1) == 0.5
    assert ev.recall_at_k(idx, probes, 3) == 1.0


def test_distractor_context_is_never_the_probed_entity(reader):
    r, bios, corpus = reader
    idx = BM25Index(corpus)
    probes = make_probes(bios.people[:6])
    excl = ev.entity_exclusion(corpus, [p.entity for p in probes])
    hits = idx.search([p.prompt for p in probes], 1, exclude=excl).indices[:, 0]
    assert all(corpus[h].entity != p.entity for h, p in zip(hits, probes))
    plain = idx.search([p.prompt for p in probes], 1).indices[:, 0]
    assert all(corpus[h].entity == p.entity for h, p in zip(plain, probes))
    s = ev.score_probes(r, probes, idx, distractor=True)
    assert s["em"].shape == (len(probes),)


@pytest.mark.parametrize("extra, k, budget, where, message", [
    ([Document("one", "Hello", "x")], 1, 8, "document 'one'", "fewer than 2 tokens"),
    ([], 3, 96, "document 'p0-d0'", "but the model takes 48"),
])
def test_evaluate_refuses_what_it_cannot_score_before_scoring(monkeypatch, extra, k, budget,
                                                              where, message):
    from descentlab.core.errors import InputError
    from descentlab.rag import RagEvalConfig, evaluate

    corpus = make_biographies(3, 2, seed=0).corpus()
    corpus = Corpus([*corpus.docs, *extra])
    model, tok = build_tiny(corpus.texts, TinyLMConfig(n_layer=1, n_head=2, n_embd=16,
                                                       n_positions=48), seed=0)
    assert max(len(x) for x in tok(corpus.texts[:6])["input_ids"]) < 47  # each fits alone
    scored = []
    monkeypatch.setattr(ev.Reader, "score", lambda self, seqs: scored.append(seqs))
    with pytest.raises(InputError) as e:
        evaluate(model, corpus, tokenizer=tok,
                 config=RagEvalConfig(k=k, context_tokens=budget))
    assert e.value.where == where and message in e.value.message
    assert scored == []
