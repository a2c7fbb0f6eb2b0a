"""The Wikipedia world: documents, cloze probes on years and counterfactual edits, built from
a summaries file in the package's format (a made-up one here: nothing is downloaded)."""

import json
import re

import pytest

from descentlab.core.errors import InputError
from descentlab.rag.experiment import RagExperimentConfig, build_world
from descentlab.rag.wiki import _end, _probe_site, _sentences, load_summaries


def _summaries(tmp_path, n=8):
    data = {f"Town {i}": {"title": f"Town {i}", "topic": "Places", "extract":
            f"Town {i} is a small place by the river. The old bridge of Town {i} was built in "
            f"{1800 + i}, after a flood. Its market is held on Mondays."} for i in range(n)}
    data["Broken"] = {"title": "Broken"}  # no extract: skipped
    path = tmp_path / "summaries_en-us.json"
    path.write_text(json.dumps(data))
    return path


def test_sentences_probe_site_and_end():
    s = _sentences("First one here. Second has 1850 in it, yes. Third (1901) not. " + "w " * 200)
    assert s[:2] == ["First one here.", "Second has 1850 in it, yes."]
    assert len(" ".join(s).split()) <= 90
    i, m = _probe_site(["Built in 1850 then.", "The tower of the old town was built in 1901, "
                        "then rebuilt."])
    assert (i, m.group(0)) == (1, "1901")  # the first year has too short a prompt
    assert _end(m.string, m) == ","
    text = "from 1830 to 1848"
    assert _end(text, re.search("1830", text)) == " to" and _end(text, re.search("1848", text)) == ""
    for text, end in (("from 1822 (in Paris)", " ("), ("in 1822 \u2014 and", " \u2014"),
                      ("in 1822   ", "")):
        assert _end(text, re.search("1822", text)) == end


def test_wiki_world_splits_articles_and_edits_years(tmp_path):
    path = _summaries(tmp_path)
    assert len(load_summaries(str(path))) == 8
    cfg = RagExperimentConfig(world="wiki", wiki_path=str(path), n_train_people=4,
                              n_retrieval_people=2, n_added_people=2, docs_per_person=2,
                              n_counterfactual=2, max_probe_people=3)
    w = build_world(cfg, seed=0)
    assert len(w.train_corpus) == 12 and w.trainable.tolist() == [True] * 8 + [False] * 4
    assert len(w.eval_corpus) == 16 and len(w.retrieval_entities) == 2
    assert {k: len(v) for k, v in w.probes.items()} == {"train": 3, "retrieval_only": 2,
                                                        "added": 2, "counterfactual": 2}
    p = w.probes["retrieval_only"][0]
    assert p.entity in w.retrieval_entities
    assert p.prompt == f"The old bridge of {p.entity} was built in" and p.end == ","
    assert p.answer == str(1800 + int(p.entity.split()[1])) and p.answer in p.candidates
    home = next(d for d in w.eval_corpus if d.entity == p.entity and p.prompt in d.text)
    assert f"{p.prompt} {p.answer}{p.end}" in home.text  # the probe reads as the text does
    cf = w.probes["counterfactual"][0]
    edited = [d for d in w.cf_corpus if d.entity == cf.entity and cf.prompt in d.text][0]
    assert f"built in {cf.answer}," in edited.text and cf.original != cf.answer
    assert {cf.answer, cf.original} <= set(cf.candidates)
    changed = [a.id for a, b in zip(w.eval_corpus, w.cf_corpus) if a.text != b.text]
    assert len(changed) == 2  # one document per edited article
    with pytest.raises(InputError) as e:
        build_world(RagExperimentConfig(world="wiki", wiki_path=str(path), n_train_people=9,
                                        n_retrieval_people=0, n_added_people=0,
                                        n_counterfactual=0), seed=0)
    assert e.value.where == "n_train_people"


def test_probe_end_is_scored_with_the_value(tmp_path):
    from descentlab.lm.tiny import TinyLMConfig, tokenizer_for
    from descentlab.rag.scoring import Reader

    tok = tokenizer_for(TinyLMConfig(tokenizer="bpe", vocab_size=300),
                        ["King of the French from 1830 to 1848.", "born in 1815."])
    reader = Reader(model=None, tokenizer=tok)
    (p, cont), (_, dot) = reader.continuations(
        [("King of the French from", "1830"), ("King of the French from", "1830")],
        [" to", "."])
    assert tok.decode(p + cont) == "King of the French from 1830 to"
    assert tok.decode(dot).strip() == "1830." and cont != dot


def test_wiki_experiment_runs_every_metric_on_the_world(tmp_path):
    from descentlab.rag import run_experiment
    from descentlab.rag.experiment import REQUIRED_FIELDS, preset_configs

    configs = preset_configs("wiki", experiment=dict(
        wiki_path=str(_summaries(tmp_path)), n_train_people=4, n_retrieval_people=2,
        n_added_people=2, n_counterfactual=2, max_probe_people=2, arms=("full",)),
        train=dict(max_steps=2, batch_size=4, log_every=1), model=dict(vocab_size=400))
    v = run_experiment(*configs)["variants"]["full"]
    assert all(v[k] == v[k] for k in REQUIRED_FIELDS)  # every field measured (no NaN)
    assert 0 <= v["qa_em_retrieval_only"] <= 1 and v["ppl_retrieval"] > 1
