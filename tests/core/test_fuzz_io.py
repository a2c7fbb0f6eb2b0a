"""Property-based fuzzing of the core/io readers: never a traceback, always an InputError
naming the file.

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200), e.g.
``DESCENTLAB_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest -q tests/core/test_fuzz_io.py
tests/rag/test_fuzz_loaders.py -p no:cacheprovider``.
"""

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402

from descentlab.core.io import read_json, read_jsonl  # noqa: E402
from tests.fuzzing import FUZZ, _clean, files_of, json_values, mutated  # noqa: E402, F401


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_io")


VALID_JSONL = b"".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"},
                                  ensure_ascii=False).encode() + b"\n" for i in range(3))
VALID_JSON = json.dumps({"seeds": [0], "variants": {"full": {"qa": 0.5}}}, indent=2).encode()


@FUZZ
@given(data=files_of(VALID_JSONL))
def test_read_jsonl_never_crashes(workdir, data):
    f = workdir / "data.jsonl"
    f.write_bytes(data)
    _clean(lambda: list(read_jsonl(f)), f)


@FUZZ
@given(data=files_of(VALID_JSON))
def test_read_json_never_crashes(workdir, data):
    f = workdir / "result.json"
    f.write_bytes(data)
    _clean(lambda: read_json(f), f)
