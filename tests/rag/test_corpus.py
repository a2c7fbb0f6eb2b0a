"""Corpus loaders and validation: bad input is one InputError naming file, line and field."""

import json

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus, Document, load_corpus, load_jsonl, load_text_folder


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_ids_entities_and_members(tmp_path):
    f = _write(tmp_path / "c.jsonl", [
        {"id": "a", "text": "alpha one", "entity": "E1"},
        {"id": "b", "text": "beta two", "entity": "E2"},
        {"id": "c", "text": "gamma three", "entity": "E1"},
        {"text": "delta four"},
    ])
    c = load_jsonl(f)
    assert c.ids == ["a", "b", "c", "row-4"]
    assert c.entity_codes.tolist() == [0, 1, 0, 2]
    assert c.entity_members[0].tolist() == [0, 2]
    assert c.max_docs_per_entity == 2
    assert c.docs_of("E1") == [0, 2] and c.docs_of("nobody") == []
    assert c[3].entity == "row-4"  # entity defaults to the id


def test_text_folder_entity_is_first_subfolder(tmp_path):
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / "bio1.txt").write_text("Ada wrote notes.\n")
    (tmp_path / "ada" / "bio2.txt").write_text("Ada met Babbage.")
    (tmp_path / "solo.txt").write_text("A lone document.")
    c = load_corpus(tmp_path)
    assert c.ids == ["ada/bio1", "ada/bio2", "solo"]
    assert [d.entity for d in c] == ["ada", "ada", "solo"]
    assert c[0].text == "Ada wrote notes."


@pytest.mark.parametrize("rows, match", [
    ([], "no documents"),
    (["{\"id\": \"a\", \"text\": \"ok\"}", "{not json"], ":2"),
    ([{"id": "a", "text": "   "}], "non-empty"),
    ([{"id": "a"}], "missing field 'text'"),
    ([{"id": "a", "text": "x y"}, {"id": "a", "text": "z w"}], "duplicate"),
    (["[1, 2]"], "JSON object"),
])
def test_bad_jsonl_is_input_error(tmp_path, rows, match):
    f = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match=match) as e:
        load_jsonl(f)
    assert "bad.jsonl" in e.value.line()


def test_bad_folders(tmp_path):
    with pytest.raises(InputError, match="no documents"):
        load_text_folder(tmp_path)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(InputError, match="no text"):
        load_text_folder(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_text_folder(tmp_path / "missing")


def test_corpus_edits_keep_positions():
    c = Corpus([Document("a", "one", "x"), Document("b", "two", "y")])
    c2 = c.replaced({"b": Document("b", "TWO", "y")})
    assert c2.texts == ["one", "TWO"] and c2.index_of == c.index_of
    assert np.array_equal(c.extended([Document("c", "three", "x")]).entity_codes, [0, 1, 0])
    with pytest.raises(InputError, match="no documents"):
        Corpus([])
