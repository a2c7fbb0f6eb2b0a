"""core/io readers: one InputError naming file and line, never a decoding traceback."""

import json

import pytest

from descentlab.core.errors import InputError
from descentlab.core.io import read_json, read_jsonl


def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_bytes(b'{"prompt": "ok"}\n\xff\xfe{"prompt"}\n')
    with pytest.raises(InputError) as e:
        list(read_jsonl(f))
    assert e.value.where == f"{f}:2"
    assert "not UTF-8" in e.value.message and "0xff" in e.value.message


def test_first_line_non_utf8_is_found_before_anything_is_yielded(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_bytes(b'\xff\xfe{"prompt"}\n')
    with pytest.raises(InputError, match=r"b\.jsonl:1: not UTF-8"):
        next(read_jsonl(f))


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path):
    f = tmp_path / "w.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}\r\n')
    assert list(read_jsonl(f)) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "expected a JSON object"),
    ("{broken", "invalid JSON"),
    ("[" * 100_000, "nested too deeply"),
    ("{\"a\": " + "9" * 10_000 + "}", "invalid JSON"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "x.jsonl"
    f.write_text('{"ok": 1}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        list(read_jsonl(f))
    assert e.value.where == f"{f}:2" and message in e.value.message


def test_read_json_non_utf8_and_bom(tmp_path):
    f = tmp_path / "r.json"
    f.write_bytes(b'{\n"a": "\xe9"\n}\n')
    with pytest.raises(InputError) as e:
        read_json(f)
    assert e.value.where == f"{f}:2" and "not UTF-8" in e.value.message
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": 1}).encode())
    assert read_json(f) == {"a": 1}
    f.write_text("[" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_json(f)


def test_a_folder_is_not_a_jsonl_file(tmp_path):
    with pytest.raises(InputError, match="not a regular file"):
        list(read_jsonl(tmp_path))
