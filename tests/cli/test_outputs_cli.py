"""Every command that writes (rag, demo, plan, navigate, prefopt, the benches) x every bad
output location: exit 2, one line, untouched.

Also: argparse errors in one line, ``rag index`` never destroys what is at --out, a failed
command leaves nothing behind, exit code 1 for "ran but failed".
"""

import json
import sys
import types

import pytest

from descentlab.cli import main as main_mod


@pytest.fixture(autouse=True)
def in_tmp_path_quietly(monkeypatch, tmp_path):
    # Relative defaults (rag-experiment/, descentlab-out/, ...) land in tmp_path; no bars.
    monkeypatch.setenv("DESCENTLAB_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)


def _corpus(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"id": f"d{i}", "text": t, "entity": f"e{i // 2}"}) + "\n"
                         for i, t in enumerate(["alpha beta gamma", "beta gamma delta",
                                                "epsilon zeta", "zeta eta theta"])))
    return f


# command -> argv without --out / --json (inputs valid or not: outputs are checked first)
COMMANDS = {
    "rag experiment": lambda t: ["rag", "experiment"],
    "rag merge": lambda t: ["rag", "merge", str(t / "r1.json")],
    "rag index": lambda t: ["rag", "index", "--corpus", str(_corpus(t))],
    "rag train": lambda t: ["rag", "train", "--corpus", str(_corpus(t))],
    "demo": lambda t: ["demo"],
    "plan": lambda t: ["plan", "--map", "note"],
    "navigate": lambda t: ["navigate", "--preset", "note"],
    "prefopt train": lambda t: ["prefopt", "train", "--data", str(t / "pairs.jsonl")],
    "prefopt experiment bandit": lambda t: ["prefopt", "experiment", "bandit", "--quick"],
}
JSON_COMMANDS = {**COMMANDS,
                 "rag eval": lambda t: ["rag", "eval", "--model", str(t / "m"),
                                        "--corpus", str(_corpus(t))],
                 "rag search": lambda t: ["rag", "search", "--index", str(t / "idx"),
                                          "--query", "beta"],
                 "plan-bench": lambda t: ["plan-bench", str(t / "m.map")],
                 "nav-bench": lambda t: ["nav-bench", "--n", "1"]}


def _snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _bad_out(kind, t):
    """A bad --out location of ``kind`` and the text the error must contain."""
    if kind == "under_a_file":
        (t / "file.txt").write_text("mine")
        return t / "file.txt" / "out", "is not a folder"
    if kind == "existing_file":
        (t / "file.txt").write_text("mine")
        return t / "file.txt", "is not a folder"
    if kind == "non_empty_folder":
        (t / "d").mkdir()
        (t / "d" / "keep.txt").write_text("keep")
        return t / "d", "not empty"
    raise AssertionError(kind)


def _bad_json(kind, t):
    if kind == "a_folder":
        (t / "jd").mkdir()
        return t / "jd", "is a folder"
    if kind == "under_a_file":
        (t / "file.txt").write_text("mine")
        return t / "file.txt" / "r.json", "not a folder"
    if kind == "not_our_file":
        (t / "notes.txt").write_text("my notes")
        return t / "notes.txt", "refusing to replace"
    raise AssertionError(kind)


def _run(argv, capsys):
    rc = main_mod.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _assert_one_line(rc, err, path, message):
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and str(path) in err and message in err


@pytest.mark.parametrize("kind", ["under_a_file", "existing_file", "non_empty_folder"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_out_location(tmp_path, capsys, command, kind):
    argv = COMMANDS[command](tmp_path)
    out, message = _bad_out(kind, tmp_path)
    before = _snapshot(tmp_path)
    rc, err = _run([*argv, "--out", str(out)], capsys)
    _assert_one_line(rc, err, out, message)
    assert _snapshot(tmp_path) == before          # nothing written, nothing of the user's gone


@pytest.mark.parametrize("kind", ["a_folder", "under_a_file", "not_our_file"])
@pytest.mark.parametrize("command", list(JSON_COMMANDS))
def test_bad_json_location_fails_before_any_work(tmp_path, capsys, command, kind):
    argv = JSON_COMMANDS[command](tmp_path)
    path, message = _bad_json(kind, tmp_path)
    out = ["--out", str(tmp_path / "new-out")] if command in COMMANDS else []
    before = _snapshot(tmp_path)
    rc, err = _run([*argv, *out, "--json", str(path)], capsys)
    _assert_one_line(rc, err, path, message)
    assert _snapshot(tmp_path) == before          # the --out folder was not even created


@pytest.mark.parametrize("command", list(COMMANDS))
def test_read_only_out_folder(tmp_path, capsys, command):
    argv = COMMANDS[command](tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        try:
            (ro / ".probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("running as root: a read-only folder is still writable")
        rc, err = _run([*argv, "--out", str(ro / "out"), "--json", str(tmp_path / "r.json")],
                       capsys)
        _assert_one_line(rc, err, ro / "out", "cannot write")
        assert not (tmp_path / "r.json").exists()
    finally:
        ro.chmod(0o755)


def test_read_only_json_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        try:
            (ro / ".probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("running as root: a read-only folder is still writable")
        rc, err = _run([*COMMANDS["rag index"](tmp_path), "--out", str(tmp_path / "idx"),
                        "--json", str(ro / "r.json")], capsys)
        _assert_one_line(rc, err, ro / "r.json", "cannot write")
        assert not (tmp_path / "idx").exists()
    finally:
        ro.chmod(0o755)


# --- rag index never destroys what is at --out -------------------------------------------

def _index(tmp_path, out, *extra):
    return main_mod.main(["rag", "index", "--corpus", str(_corpus(tmp_path)), "--out", str(out),
                          *extra])


def test_index_keeps_keep_txt(tmp_path, capsys):
    from descentlab.rag.retrieval import BM25Index

    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("keep")
    assert _index(tmp_path, d) == 2
    assert sorted(p.name for p in d.iterdir()) == ["keep.txt"]
    assert _index(tmp_path, d, "--overwrite") == 0           # writes into it, keeps keep.txt
    assert (d / "keep.txt").read_text() == "keep"
    idx = BM25Index.load(d)
    assert len(idx) == 4 and idx.search(["epsilon"], 1).indices[0, 0] == 2
    assert _index(tmp_path, d) == 0                          # now an index of ours: no flag
    assert (d / "keep.txt").read_text() == "keep"


def test_index_into_a_file_is_refused_even_with_overwrite(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("mine")
    assert _index(tmp_path, f, "--overwrite") == 2
    assert f.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_index_out_dot(tmp_path, capsys, monkeypatch):
    corpus = _corpus(tmp_path)
    assert main_mod.main(["rag", "index", "--corpus", str(corpus), "--out", "."]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert main_mod.main(["rag", "index", "--corpus", str(corpus), "--out", "."]) == 0
    assert (empty / "descentlab_index.json").is_file()


def test_reindex_with_another_method_removes_only_its_own_stale_files(tmp_path, capsys):
    from descentlab.rag.retrieval import BM25Index

    d = tmp_path / "idx"
    assert _index(tmp_path, d, "--method", "bm25l") == 0
    assert (d / "nonoccurrence_array.index.npy").exists()
    (d / "notes.md").write_text("mine")
    assert _index(tmp_path, d, "--method", "lucene") == 0
    assert not (d / "nonoccurrence_array.index.npy").exists()
    assert (d / "notes.md").read_text() == "mine"
    assert BM25Index.load(d).params["method"] == "lucene"


def test_failed_index_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "one"}\n{"id": "a", "text": "two"}\n')
    rc = main_mod.main(["rag", "index", "--corpus", str(bad), "--out", str(tmp_path / "x" / "i")])
    assert rc == 2 and "duplicate" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# --- a failed command leaves nothing behind ------------------------------------------------

def test_failed_train_removes_the_folder_it_created(tmp_path, capsys):
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b'{"id": "a", "text": "one two"}\n\xff\xfe{"text"}\n')
    rc = main_mod.main(["rag", "train", "--corpus", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.endswith(f"{bad}:2: not UTF-8 text (byte 0xff at column 1; "
                                    "save the file as UTF-8)")
    assert not (tmp_path / "run").exists()


def test_resume_without_checkpoint_leaves_nothing(tmp_path, capsys):
    rc = main_mod.main(["rag", "train", "--corpus", str(_corpus(tmp_path)), "--out",
                        str(tmp_path / "run"), "--resume", "--max-steps", "1", "--n-layer", "1",
                        "--n-embd", "8", "--n-head", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no checkpoint to resume from" in err
    assert not (tmp_path / "run").exists()


def test_eval_checks_the_probes_before_loading_the_model(tmp_path, capsys):
    probes = tmp_path / "p.jsonl"
    probes.write_text('{"prompt": "X was born in", "answer": "Y", "candidates": 3}\n')
    rc = main_mod.main(["rag", "eval", "--model", str(tmp_path / "no-model"), "--corpus",
                        str(_corpus(tmp_path)), "--probes", str(probes)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{probes}:1: field 'candidates'" in err


def test_json_rerun_replaces_our_result_and_overwrite_replaces_others(tmp_path, capsys):
    j = tmp_path / "i.json"
    assert _index(tmp_path, tmp_path / "i", "--json", str(j)) == 0
    assert json.loads(j.read_text())["docs"] == 4
    j.write_text(json.dumps({"docs": -1}))                   # an earlier result: replaced
    assert _index(tmp_path, tmp_path / "i", "--json", str(j)) == 0
    assert json.loads(j.read_text())["docs"] == 4
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert _index(tmp_path, tmp_path / "i", "--json", str(notes)) == 2
    assert notes.read_text() == "my notes"
    assert _index(tmp_path, tmp_path / "i", "--json", str(notes), "--overwrite") == 0
    assert json.loads(notes.read_text())["docs"] == 4


# --- argparse errors: one line and exit 2 ----------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["rag", "index", "--corpus", "c.jsonl", "--out", "i", "--method", "nope"],
     "argument --method: invalid choice: 'nope'"),
    (["rag", "index", "--corpus", "c.jsonl", "--out"], "argument --out: expected one argument"),
    (["rag", "eval", "--model", "m", "--corpus", "c.jsonl", "--k", "-1,5"],
     "needs '=': --k=-1,5"),
    (["rag", "index", "--out", "i"], "the following arguments are required: --corpus"),
    (["rag", "eval", "--model", "m", "--corpus", "c", "--k", "two"],
     "argument --k: invalid int value: 'two'"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["rag"], "required: SUBCOMMAND"),
])
def test_argparse_errors_are_one_line(capsys, argv, message):
    rc = main_mod.main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert rc == 2 and cap.out == ""
    assert len(err.splitlines()) == 1, err
    assert message in err and "--help'" in err and "usage:" not in err


def test_help_and_version_exit_0(capsys):
    assert main_mod.main(["--version"]) == 0
    assert main_mod.main(["rag", "index", "--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out


# --- exit codes 0 / 1 / 2 --------------------------------------------------------------------

def _fake_wing(monkeypatch, run):
    mod = types.ModuleType("fake_wing")

    def register(sub):
        from descentlab.cli.main import add_common_args
        from descentlab.core.outputs import folder

        p = sub.add_parser("fake")
        p.add_argument("--out", default="fake-out")
        add_common_args(p, device=False)
        p.set_defaults(run=run, outputs=(folder("out"),))

    mod.register = register
    monkeypatch.setitem(sys.modules, "fake_wing", mod)
    monkeypatch.setattr(main_mod, "COMMANDS", {"fake": ("fake_wing", "a stand-in wing")})


def test_ran_but_failed_is_exit_1_and_keeps_result_and_outputs(tmp_path, monkeypatch, capsys):
    from descentlab.core.errors import EXIT_FAILED

    def run(args):
        (tmp_path / "o" / "plan.png").write_text("fig")
        args.exit_code = EXIT_FAILED
        return {"valid": False}

    _fake_wing(monkeypatch, run)
    rc = main_mod.main(["fake", "--out", str(tmp_path / "o"), "--json", str(tmp_path / "r.json")])
    assert rc == 1
    assert json.loads((tmp_path / "r.json").read_text()) == {"valid": False}
    assert (tmp_path / "o" / "plan.png").read_text() == "fig"  # kept, not cleaned up


def test_os_error_while_running_is_one_line_exit_1_and_cleans_up(tmp_path, monkeypatch, capsys):
    def run(args):
        (tmp_path / "o" / "part.bin").write_text("half")
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "part.bin"))

    _fake_wing(monkeypatch, run)
    rc = main_mod.main(["fake", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "No space left on device" in err
    assert not (tmp_path / "o").exists()
