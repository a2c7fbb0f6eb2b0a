"""``descentlab rag``: the tiny preset end to end, index/train/eval, bad input -> exit 2."""

import json

import pytest

from descentlab.cli import main as main_mod
from descentlab.rag.experiment import ARMS, REQUIRED_FIELDS


@pytest.fixture(autouse=True)
def only_rag(monkeypatch):
    # Test this command alone, whatever other wings are registered.
    monkeypatch.setattr(main_mod, "COMMANDS", {"rag": main_mod.COMMANDS["rag"]})
    monkeypatch.setenv("DESCENTLAB_PROGRESS", "0")


def test_tiny_preset_json_has_every_variant_and_field(tmp_path, capsys):
    out = tmp_path / "exp"  # the tiny preset's world and model, a few steps only
    rc = main_mod.main(["rag", "experiment", "--preset", "tiny", "--out", str(out),
                        "--json", str(tmp_path / "r.json"), "--max-steps", "6",
                        "--log-every", "2", "--n-train-people", "12"])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["preset"] == "tiny"
    assert set(res["variants"]) == set(ARMS)
    for arm, v in res["variants"].items():
        for f in REQUIRED_FIELDS:
            assert isinstance(v[f], float), (arm, f)
        for f in ("qa_em_train", "qa_em_retrieval_only", "qa_em_added",
                  "counterfactual_follow_rate", "memorisation_ratio"):
            assert 0.0 <= v[f] <= 1.0
        assert v["ppl_no_retrieval"] > 1 and v["ppl_retrieval"] > 1
        assert (out / "seed0" / arm / "checkpoint.pt").exists()
    assert res["retrieval"]["recall_at_1"] > 0.5  # names make BM25 find the person
    for fig in ("qa.png", "grounding.png", "loss.png"):
        assert (out / fig).stat().st_size > 1000
    table = capsys.readouterr().out
    assert all(arm in table for arm in ARMS)
    assert res["loss_steps"] == [2, 4, 6]


def _corpus(tmp_path, rows):
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" if not isinstance(r, str) else r + "\n"
                         for r in rows))
    return f


def test_index_train_eval_on_a_user_corpus(tmp_path):
    from descentlab.rag.synthetic import make_biographies, make_probes

    bios = make_biographies(6, 2, seed=0)
    corpus = bios.corpus().to_jsonl(tmp_path / "bios.jsonl")
    assert main_mod.main(["rag", "index", "--corpus", str(corpus), "--out",
                          str(tmp_path / "idx"), "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["docs"] == 12
    train = ["rag", "train", "--corpus", str(corpus), "--out", str(tmp_path / "run"),
             "--variant", "leave_one_out", "--k", "1", "--context-tokens", "40",
             "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--batch-size", "4",
             "--json", str(tmp_path / "t.json")]
    assert main_mod.main([*train, "--max-steps", "4"]) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["steps"] == 4 and t["targets_per_epoch"] == 12
    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.answer,
                                          "candidates": list(p.candidates)}) + "\n"
                              for p in make_probes(bios.people[:2])))
    assert main_mod.main(["rag", "eval", "--model", str(tmp_path / "run" / "model"),
                          "--corpus", str(corpus), "--probes", str(probes), "--k", "1",
                          "--context-tokens", "40", "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["docs"] == 12 and 0 <= e["qa_em_retrieval"] <= 1 and e["ppl_retrieval"] > 1


@pytest.mark.parametrize("rows, args, message", [
    ([], [], "no documents"),
    ([{"id": "a", "text": ""}], [], "row"),
    ([{"id": "a", "text": "one two"}, "{broken"], [], "c.jsonl:2"),
    ([{"id": "a", "text": "one two"}, {"id": "b", "text": "three four"}], ["--k", "5"],
     "k=5 is larger"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, rows, args, message):
    f = _corpus(tmp_path, rows)
    rc = main_mod.main(["rag", "train", "--corpus", str(f), "--out", str(tmp_path / "o"),
                        "--max-steps", "1", "--n-layer", "1", "--n-embd", "8", "--n-head", "1",
                        *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "error" in err
    if message != "row":
        assert message in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def _index(tmp_path, corpus):
    assert main_mod.main(["rag", "index", "--corpus", str(corpus), "--out",
                          str(tmp_path / "idx"), "--json", str(tmp_path / "i.json")]) == 0
    return tmp_path / "idx"


def test_search_prints_ranked_hits_and_excludes(tmp_path, capsys):
    from descentlab.rag.synthetic import make_biographies

    bios = make_biographies(4, 2, seed=0)
    corpus = bios.corpus().to_jsonl(tmp_path / "bios.jsonl")
    idx = _index(tmp_path, corpus)
    person = bios.people[1]
    capsys.readouterr()
    assert main_mod.main(["rag", "search", "--index", str(idx), "--query", person.name,
                          "--k", "3", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "s.json").read_text())
    hits = res["queries"][0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {h["entity"] for h in hits[:2]} == {person.id}  # both of the person's documents
    assert hits[0]["score"] >= hits[1]["score"] > hits[2]["score"]
    assert hits[0]["id"] in out and "snippet" in out
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": person.name, "exclude_doc": hits[0]["id"]}) + "\n")
    assert main_mod.main(["rag", "search", "--index", str(idx), "--queries", str(queries),
                          "--query", person.name, "--exclude-entity", person.id, "--k", "2",
                          "--json", str(tmp_path / "s2.json")]) == 0
    q1, q2 = json.loads((tmp_path / "s2.json").read_text())["queries"]
    assert all(h["entity"] != person.id for h in q1["hits"])  # --exclude-entity: every query
    assert all(h["entity"] != person.id for h in q2["hits"])
    assert main_mod.main(["rag", "search", "--index", str(idx), "--query", "x",
                          "--exclude-doc", "nobody"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("--exclude-doc: no document with id "
                                                       "'nobody' in the index")


def test_train_and_eval_reuse_a_saved_index(tmp_path, capsys):
    from descentlab.rag.synthetic import make_biographies, make_probes

    bios = make_biographies(6, 2, seed=0)
    corpus = bios.corpus().to_jsonl(tmp_path / "bios.jsonl")
    idx = _index(tmp_path, corpus)
    tiny = ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--batch-size", "4",
            "--k", "1", "--context-tokens", "40", "--max-steps", "4", "--log-every", "2"]
    assert main_mod.main(["rag", "train", "--index", str(idx), "--out", str(tmp_path / "run"),
                          "--variant", "leave_one_out", *tiny,
                          "--json", str(tmp_path / "t.json")]) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["steps"] == 4 and t["docs"] == 12 and t["index"] == str(idx)
    err = capsys.readouterr().err
    assert "it/s" not in err and "shards" not in err  # no library progress bars
    assert (tmp_path / "run" / "loss.png").stat().st_size > 5000
    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.answer}) + "\n"
                              for p in make_probes(bios.people[:2])))
    assert main_mod.main(["rag", "eval", "--model", t["model"], "--index", str(idx),
                          "--probes", str(probes), "--k", "1", "--context-tokens", "40",
                          "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["settings"] == {**e["settings"], "k": 1, "context_tokens": 40, "retriever": "bm25",
                             "model": t["model"], "index": str(idx), "probes": str(probes)}
    assert e["docs"] == 12 and e["ppl_retrieval"] > 1
    capsys.readouterr()
    other = bios.corpus().subset(range(10)).to_jsonl(tmp_path / "other.jsonl")
    for cmd in (["train", "--corpus", str(other), "--out", str(tmp_path / "r2"), *tiny],
                ["eval", "--model", t["model"], "--corpus", str(other)]):
        assert main_mod.main(["rag", *cmd, "--index", str(idx)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--index: the index was built from another " \
            "corpus (12 documents" in err
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize("cmd", [["index", "--corpus", "c.jsonl", "--out", "idx"],
                                 ["merge", "r.json"], ["search", "--index", "idx"]])
def test_every_subcommand_checks_device(tmp_path, capsys, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    _corpus(tmp_path, [{"id": "a", "text": "one two"}])
    assert main_mod.main(["rag", *cmd, "--device", "nonsense"]) == 2
    assert "--device" in capsys.readouterr().err


def test_train_resume_and_eval_refuse_another_or_a_too_small_model(tmp_path, capsys):
    docs = [{"id": f"d{i}", "entity": f"e{i // 2}",
             "text": f"Person {i} lives in town {i} and works as a baker near the old river "
                     f"with a dog named Rex and a grey cat named Tom {i}."} for i in range(6)]
    corpus = _corpus(tmp_path, docs)
    run = tmp_path / "run"
    train = ["rag", "train", "--corpus", str(corpus), "--out", str(run), "--variant",
             "closed_book", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
             "--n-positions", "48", "--batch-size", "2", "--max-steps", "2"]
    assert main_mod.main(train) == 0
    assert main_mod.main([*train, "--resume"]) == 0
    capsys.readouterr()
    for flags, name in ((["--dropout", "0.1"], "tiny_dropout"), (["--n-layer", "2"], "tiny_n_layer"),
                        (["--tokenizer", "bpe"], "tiny_tokenizer")):
        assert main_mod.main([*train, "--resume", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{name} differs" in err
    # 3 passages of 96 tokens before a document do not fit the model's 48 positions: refused
    # before anything is scored (a document alone does)
    assert main_mod.main(["rag", "eval", "--model", str(run / "model"), "--corpus", str(corpus),
                          "--k", "3", "--context-tokens", "96"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "but the model takes 48" in err
