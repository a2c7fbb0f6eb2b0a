"""The rag library API: saved indexes with fingerprints, search by id, train / evaluate with no
output folder, no global side effects."""

import dataclasses
import json
import os

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.core.seeding import torch_threads
from descentlab.rag import (
    BM25Index,
    Corpus,
    Document,
    RagEvalConfig,
    RagObjectiveConfig,
    evaluate,
    make_biographies,
    make_probes,
    search,
    train,
)
from descentlab.rag.api import Query, load_queries, quiet_libraries
from descentlab.rag.retrieval import check_index_corpus

WORLD = Corpus([
    Document("ada-1", "Ada Byron was born in London and studied mathematics.", "ada"),
    Document("ada-2", "Ada Byron worked with Charles Babbage on the engine.", "ada"),
    Document("alan-1", "Alan Turing was born in London and studied at Cambridge.", "alan"),
    Document("grace-1", "Grace Hopper wrote the first compiler for the Navy.", "grace"),
])


def test_fingerprint_is_order_and_content_sensitive():
    same = Corpus(list(WORLD))
    swapped = Corpus([WORLD[1], WORLD[0], *WORLD[2:]])
    edited = WORLD.replaced({"grace-1": Document("grace-1", "Grace Hopper wrote COBOL.",
                                                 "grace")})
    assert same.fingerprint == WORLD.fingerprint and len(WORLD.fingerprint) == 64
    assert swapped.fingerprint != WORLD.fingerprint != edited.fingerprint


def test_saved_index_keeps_its_fingerprint_and_refuses_another_corpus(tmp_path):
    BM25Index(WORLD).save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "descentlab_index.json").read_text())
    assert meta["fingerprint"] == WORLD.fingerprint
    idx = BM25Index.load(tmp_path / "idx")
    check_index_corpus(idx, WORLD)  # the same documents: accepted
    with pytest.raises(InputError) as e:
        check_index_corpus(idx, WORLD.subset([0, 1, 2]))
    assert e.value.where == "index" and "another corpus (4 documents" in e.value.message
    # documents.jsonl edited behind the index's back: caught at load
    lines = (tmp_path / "idx" / "documents.jsonl").read_text().splitlines()
    (tmp_path / "idx" / "documents.jsonl").write_text(
        "\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(InputError, match="fingerprint differs"):
        BM25Index.load(tmp_path / "idx")


def test_hits_rank_by_id_and_exclude_exactly():
    idx = BM25Index(WORLD)
    (plain,) = idx.hits(["Ada Byron Babbage"], k=2)
    assert [h.id for h in plain] == ["ada-2", "ada-1"] and [h.rank for h in plain] == [1, 2]
    assert plain[0].score > plain[1].score > 0 and plain[0].entity == "ada"
    no_doc, no_ent = idx.hits(["Ada Byron Babbage"] * 2, k=2,
                              exclude_docs=[["ada-2"], []], exclude_entities=[[], ["ada"]])
    assert [h.id for h in no_doc][0] == "ada-1"
    assert all(h.entity != "ada" for h in no_ent)
    with pytest.raises(InputError) as e:
        idx.hits(["x"], k=1, exclude_docs=[["nobody"]])
    assert e.value.where == "exclude_docs"
    # the search function over Query objects gives the same hits
    (via,) = search(idx, [Query("Ada Byron Babbage", exclude_entities=("ada",))], k=2)
    assert via == no_ent


def test_load_queries_text_and_jsonl(tmp_path):
    (tmp_path / "q.txt").write_text("first query\n\n  second  \n")
    assert [q.text for q in load_queries(tmp_path / "q.txt")] == ["first query", "second"]
    (tmp_path / "q.jsonl").write_text('{"query": "a b", "exclude_doc": "ada-1"}\n'
                                      '{"query": "c", "exclude_entity": ["ada", "alan"]}\n')
    qs = load_queries(tmp_path / "q.jsonl")
    assert qs == [Query("a b", ("ada-1",)), Query("c", (), ("ada", "alan"))]
    (tmp_path / "bad.jsonl").write_text('{"query": "a"}\n{"query": 3}\n')
    with pytest.raises(InputError) as e:
        load_queries(tmp_path / "bad.jsonl")
    assert str(e.value.where).endswith("bad.jsonl:2")


def test_train_and_evaluate_without_an_output_folder(tmp_path, monkeypatch, capsys):
    from descentlab.core.training import TrainConfig
    from descentlab.lm.tiny import TinyLMConfig
    from descentlab.rag import scoring

    monkeypatch.chdir(tmp_path)
    bios = make_biographies(6, 2, seed=0)
    corpus = bios.corpus()
    index = BM25Index(corpus)
    run = train(corpus, index=index, tiny=TinyLMConfig(n_layer=1, n_head=2, n_embd=16),
                objective=RagObjectiveConfig(variant="leave_one_out", k=1, context_tokens=40),
                train_config=TrainConfig(max_steps=3, batch_size=4, log_every=1))
    assert run.steps == 3 and [r["step"] for r in run.history] == [1, 2, 3]
    assert run.targets_per_epoch == 12 and run.out_dir is None
    probes = make_probes(bios.people[:2])
    ev = evaluate(run.model, tokenizer=run.tokenizer, index=index, probes=probes,
                  config=RagEvalConfig(k=1, context_tokens=40))
    # the same numbers as the scoring functions called directly
    reader = scoring.Reader(run.model, run.tokenizer, k=1, budget=40)
    assert ev.ppl_retrieval == pytest.approx(
        scoring.perplexity(reader, corpus, list(range(12)), index, seed=0))
    em = scoring.score_probes(reader, probes, index)["em"].mean()
    assert ev.qa["qa_em_retrieval"] == pytest.approx(em)
    assert ev.settings["k"] == 1 and ev.settings["context_tokens"] == 40
    assert ev.settings["index"] == "BM25Index" and ev.settings["probes"] == "10 probes"
    assert os.listdir(tmp_path) == [] and capsys.readouterr().out == ""
    with pytest.raises(InputError) as e:  # an index of other documents is refused
        train(corpus.subset(range(6)), index=index)
    assert e.value.where == "index"


def test_library_changes_no_global_state(monkeypatch):
    import torch
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    BM25Index(WORLD).search(["Ada"], 1)
    assert "JAX_PLATFORMS" not in os.environ
    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    threads = torch.get_num_threads()  # 1: the suite's autouse fixture sets it
    with quiet_libraries(), torch_threads("cpu", 2):
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert torch.get_num_threads() == 2 != threads
    assert hf_logging.is_progress_bar_enabled() == bars
    assert hf_logging.get_verbosity() == level and torch.get_num_threads() == threads


def test_config_errors_name_fields_not_flags():
    from descentlab.rag.experiment import RagExperimentConfig

    cases = [(lambda: RagObjectiveConfig(k=0), "RagObjectiveConfig.k"),
             (lambda: RagObjectiveConfig(split_ratio=1.0), "RagObjectiveConfig.split_ratio"),
             (lambda: RagObjectiveConfig(exclude="none"), "RagObjectiveConfig.exclude"),
             (lambda: RagExperimentConfig(arms=("nope",)), "RagExperimentConfig.arms"),
             (lambda: RagExperimentConfig(n_counterfactual=99),
              "RagExperimentConfig.n_counterfactual"),
             (lambda: RagEvalConfig(retriever="nope"), "RagEvalConfig.retriever")]
    for make, where in cases:
        with pytest.raises(InputError) as e:
            make()
        assert e.value.where == where


def test_run_experiment_prints_nothing_and_reports_through_log(tmp_path, monkeypatch, capsys):
    from descentlab.rag import run_experiment
    from descentlab.rag.experiment import preset_configs

    monkeypatch.chdir(tmp_path)
    configs = preset_configs("tiny", experiment=dict(
        n_train_people=4, n_retrieval_people=2, n_added_people=1, n_counterfactual=1,
        max_probe_people=2, arms=("closed_book", "full")),
        train=dict(max_steps=4, log_every=2, batch_size=4))
    lines = []
    res = run_experiment(*configs, log=lines.append)
    assert capsys.readouterr().out == "" and os.listdir(tmp_path) == []
    assert [ln.split(":")[0] for ln in lines] == ["[rag] seed 0 closed_book", "[rag] seed 0 full"]
    assert res["loss_steps"] == [2, 4] and len(res["loss_curves"]["full"]) == 2
    assert np.isfinite(res["variants"]["full"]["ppl_retrieval"])


def test_resume_refuses_another_objective_corpus_or_retriever(tmp_path):
    from descentlab.core.training import TrainConfig
    from descentlab.lm.tiny import TinyLMConfig

    corpus = make_biographies(4, 2, seed=0).corpus()
    kw = dict(tiny=TinyLMConfig(n_layer=1, n_head=2, n_embd=16), out_dir=tmp_path / "run",
              train_config=TrainConfig(max_steps=2, batch_size=4, log_every=1))
    obj = RagObjectiveConfig(variant="full", k=1, context_tokens=40)
    first = train(corpus, objective=obj, **kw)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and first.steps == 2
    again = train(corpus, objective=obj, resume=True, **kw)  # the same run: nothing to do
    assert again.steps == 2
    for changed in (dict(objective=RagObjectiveConfig(variant="full", k=2, context_tokens=40)),
                    dict(objective=obj, corpus=corpus.subset(range(7))),
                    dict(objective=obj, index=BM25Index(corpus, k1=1.2)),  # BM25 params
                    dict(objective=obj, index=type("OtherIndex", (BM25Index,), {})(corpus))):
        args = {"corpus": corpus, **changed}
        with pytest.raises(InputError) as e:
            train(args.pop("corpus"), resume=True, **args, **kw)
        assert e.value.where == "resume" and "differs" in e.value.message


def test_bad_params_in_a_saved_index_name_the_metadata_file(tmp_path):
    BM25Index(WORLD).save(tmp_path / "idx")
    meta_file = tmp_path / "idx" / "descentlab_index.json"
    meta = json.loads(meta_file.read_text())
    meta["params"]["method"] = "mucene"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(InputError) as e:
        BM25Index.load(tmp_path / "idx")
    assert e.value.where == str(meta_file) and "params.method" in e.value.message


def test_resume_refuses_another_starting_model(tmp_path):
    from descentlab.core.training import TrainConfig
    from descentlab.lm.tiny import TinyLMConfig, build_tiny

    corpus = make_biographies(4, 2, seed=0).corpus()
    obj = RagObjectiveConfig(variant="full", k=1, context_tokens=40)
    size = dict(n_layer=1, n_head=2, n_embd=16)
    kw = dict(objective=obj, train_config=TrainConfig(max_steps=2, batch_size=4, log_every=1))
    train(corpus, tiny=TinyLMConfig(**size), out_dir=tmp_path / "tiny", **kw)
    assert train(corpus, tiny=TinyLMConfig(**size), out_dir=tmp_path / "tiny", resume=True,
                 **kw).steps == 2
    # same weights (dropout has none) or other sizes: refused before any training
    for changed, name in ((dict(dropout=0.1), "tiny_dropout"), (dict(n_layer=2), "tiny_n_layer"),
                          (dict(n_embd=32), "tiny_n_embd"), (dict(tokenizer="bpe"),
                                                             "tiny_tokenizer")):
        with pytest.raises(InputError) as e:
            train(corpus, tiny=TinyLMConfig(**{**size, **changed}), out_dir=tmp_path / "tiny",
                  resume=True, **kw)
        assert e.value.where == "resume" and e.value.message.startswith(f"{name} differs")
    # a model folder: another one of the same architecture (other weights, or only another
    # dropout in its config) is refused; the same weights from a copied folder are not
    for name, seed, dropout in (("a", 0, 0.0), ("b", 1, 0.0), ("c", 0, 0.1)):
        m, tok = build_tiny(corpus.texts, TinyLMConfig(**size, dropout=dropout), seed=seed)
        m.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    (tmp_path / "a2").mkdir()
    for f in (tmp_path / "a").iterdir():
        (tmp_path / "a2" / f.name).write_bytes(f.read_bytes())
    train(corpus, model=str(tmp_path / "a"), out_dir=tmp_path / "dir", **kw)
    assert train(corpus, model=tmp_path / "a2", out_dir=tmp_path / "dir", resume=True,
                 **kw).steps == 2
    for other in ("b", "c"):
        with pytest.raises(InputError) as e:
            train(corpus, model=tmp_path / other, out_dir=tmp_path / "dir", resume=True, **kw)
        assert e.value.where == "resume" and e.value.message.startswith("model differs")
    # a's weights beside a tokenizer trained on other texts: the same ids no longer
    from descentlab.lm.tiny import train_tokenizer

    (tmp_path / "a3").mkdir()
    for f in (tmp_path / "a").glob("*.safetensors"):
        (tmp_path / "a3" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "a3" / "config.json").write_bytes((tmp_path / "a" / "config.json").read_bytes())
    train_tokenizer(corpus.texts[::-1] + ["zebra quartz"], vocab_size=4096).save_pretrained(
        tmp_path / "a3")
    with pytest.raises(InputError) as e:
        train(corpus, model=tmp_path / "a3", out_dir=tmp_path / "dir", resume=True, **kw)
    assert e.value.where == "resume" and e.value.message.startswith("tokenizer differs")


def test_experiment_resume_refuses_another_model_size(tmp_path):
    from descentlab.rag import run_experiment
    from descentlab.rag.experiment import preset_configs

    def configs(**model):
        return preset_configs("tiny", experiment=dict(
            n_train_people=4, n_retrieval_people=1, n_added_people=1, n_counterfactual=1,
            max_probe_people=1, arms=("full",)), train=dict(max_steps=2, batch_size=4),
            model=dict(n_layer=1, n_embd=16, **model))

    run_experiment(*configs(), tmp_path)
    assert run_experiment(*configs(), tmp_path, resume=True)["loss_steps"] == [2]
    with pytest.raises(InputError) as e:
        run_experiment(*configs(dropout=0.2), tmp_path, resume=True)
    assert e.value.where == "resume" and e.value.message.startswith("tiny_dropout differs")
    # more probed people: the same training documents, but a tokenizer trained on more text
    exp, *rest = configs()
    with pytest.raises(InputError) as e:
        run_experiment(dataclasses.replace(exp, max_probe_people=2), *rest, tmp_path,
                       resume=True)
    assert e.value.where == "resume" and e.value.message.startswith("tokenizer differs")
