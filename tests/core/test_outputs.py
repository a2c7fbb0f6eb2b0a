"""core/outputs: the output rule (checked first, never clobbered, removed on failure)."""

import json
import os

import pytest

from descentlab.core import outputs
from descentlab.core.errors import InputError


def _read_only(path):
    """chmod ``path`` read-only; skip where that does not stop writes (root)."""
    path.chmod(0o555)
    probe = path / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return
    probe.unlink()
    path.chmod(0o755)
    pytest.skip("running as root: a read-only folder is still writable")


def test_new_folder_is_accepted_and_nothing_is_created(tmp_path):
    p = outputs.check_folder(tmp_path / "a" / "b")
    assert p == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setup, message", [
    (lambda t: (t / "f").write_text("x") and t / "f", "is not a folder"),
    (lambda t: (t / "f").write_text("x") and t / "f" / "sub", "is not a folder"),
    (lambda t: (t / "d").mkdir() or (t / "d" / "keep.txt").write_text("k") and t / "d",
     "not empty"),
])
def test_bad_folders_are_refused_naming_the_path(tmp_path, setup, message):
    path = setup(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as e:
        outputs.check_folder(path)
    assert message in e.value.message
    assert str(path) in e.value.line()
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_file_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(InputError, match="is not a folder"):
        outputs.check_folder(tmp_path / "f", overwrite=True)
    assert (tmp_path / "f").read_text() == "mine"


def test_non_empty_folder_is_accepted_when_ours_or_with_overwrite(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("k")
    assert outputs.check_folder(d, overwrite=True) == d
    assert outputs.check_folder(d, recognise=("keep.txt",)) == d
    (d / "keep.txt").unlink()
    (d / "checkpoint.pt").write_text("")
    assert outputs.check_folder(d) == d       # a training folder of ours


def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(ro)
    try:
        with pytest.raises(InputError, match="cannot write"):
            outputs.check_folder(ro / "out")
        with pytest.raises(InputError, match="cannot write"):
            outputs.check_file(ro / "r.json")
    finally:
        ro.chmod(0o755)


def test_file_checks(tmp_path):
    assert outputs.check_file(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        outputs.check_file(tmp_path / "d", overwrite=True)
    with pytest.raises(InputError, match="is a folder"):
        outputs.check_file(f"{tmp_path}/nope/")
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(InputError, match="refusing to replace") as e:
        outputs.check_file(tmp_path / "notes.txt")
    assert str(tmp_path / "notes.txt") in e.value.line()
    assert outputs.check_file(tmp_path / "notes.txt", overwrite=True)
    with pytest.raises(InputError, match="not a folder"):
        outputs.check_file(tmp_path / "notes.txt" / "r.json", overwrite=True)
    (tmp_path / "old.json").write_text(json.dumps({"steps": 3}))
    assert outputs.check_file(tmp_path / "old.json")            # an earlier result of ours
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError):
        outputs.check_file(tmp_path / "list.json")              # not one of our results
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_prepared_outputs_creates_marks_and_keeps_on_success(tmp_path):
    out = tmp_path / "a" / "out"
    with outputs.prepared_outputs([out], [tmp_path / "r.json"], command="test") as prep:
        assert prep.folders == [out] and out.is_dir()
        (out / "result.txt").write_text("done")
    marker = json.loads((out / outputs.MARKER).read_text())
    assert marker["command"] == "test" and marker["written_by"] == "descentlab"
    assert (out / "result.txt").read_text() == "done"
    # the marker makes it ours: a second run goes in without overwrite
    with outputs.prepared_outputs([out]):
        pass


def test_failure_removes_every_folder_it_created(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(ValueError):
        with outputs.prepared_outputs([out, tmp_path / "a" / "other"]):
            (out / "init").mkdir()
            (out / "init" / "config.json").write_text("{}")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_in_an_existing_folder_removes_only_new_entries(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("k")
    with pytest.raises(InputError):
        with outputs.prepared_outputs([d], overwrite=True):
            (d / "new.txt").write_text("n")
            (d / "newdir").mkdir()
            raise InputError("bad row", where="x.jsonl:3")
    assert sorted(p.name for p in d.iterdir()) == ["keep.txt"]
    assert (d / "keep.txt").read_text() == "k"


def test_interrupt_and_checkpoints_are_kept(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with outputs.prepared_outputs([out]):
            (out / "train_log.jsonl").write_text("")
            raise KeyboardInterrupt
    assert (out / "train_log.jsonl").exists()          # --resume needs what is there
    out2 = tmp_path / "out2"
    with pytest.raises(RuntimeError):
        with outputs.prepared_outputs([out2]) as prep:
            (out2 / "run").mkdir()
            (out2 / "run" / "checkpoint.pt").write_text("")
            raise RuntimeError("diverged at step 900")
    assert (out2 / "run" / "checkpoint.pt").exists() and prep.kept == [out2]


def test_a_bad_second_location_creates_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        with outputs.prepared_outputs([tmp_path / "new"], [tmp_path / "d"]):
            pytest.fail("the body must not run")
    assert not (tmp_path / "new").exists()


def test_from_args_skips_empty_paths():
    import argparse

    ns = argparse.Namespace(out="", json=None, figs="f")
    specs = [outputs.folder("out"), outputs.file("json"), outputs.folder("figs", recognise=("x",))]
    assert outputs.from_args(ns, specs) == ([("f", ("x",))], [])


def test_symlink_to_nowhere_is_refused(tmp_path):
    os.symlink(tmp_path / "missing", tmp_path / "link")
    with pytest.raises(InputError, match="broken symbolic link"):
        outputs.check_folder(tmp_path / "link")
    with pytest.raises(InputError, match="broken symbolic link"):
        outputs.check_file(tmp_path / "link", overwrite=True)


def test_overwrite_into_a_foreign_folder_does_not_make_it_ours(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep.txt").write_text("k")
    with outputs.prepared_outputs([d], overwrite=True):
        (d / "plan.png").write_text("fig")
    assert not (d / outputs.MARKER).exists()
    with pytest.raises(InputError, match="not empty"):
        outputs.check_folder(d)                # the next run must ask again
    assert sorted(p.name for p in d.iterdir()) == ["keep.txt", "plan.png"]


def test_a_checkpoint_written_into_an_existing_folder_is_kept(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(RuntimeError):
        with outputs.prepared_outputs([d]) as prep:
            (d / "checkpoint.pt").write_text("")
            (d / "train_log.jsonl").write_text("")
            raise RuntimeError("diverged")
    assert sorted(p.name for p in d.iterdir()) == sorted([outputs.MARKER, "checkpoint.pt",
                                                          "train_log.jsonl"])
    assert prep.kept == [d]
