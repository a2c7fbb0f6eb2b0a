"""Property-based fuzzing of preference data: ``load_pairs`` on random bytes, random JSON
lines, mutations of a valid file and random row structures never raises anything but an
InputError naming the file (one line); what it accepts tokenizes (or is an InputError).

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200), e.g.
``DESCENTLAB_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest -q
tests/preference/test_fuzz_pairs.py -p no:cacheprovider``.
"""

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from descentlab.core.errors import InputError  # noqa: E402
from descentlab.preference.data import load_pairs, tokenize_pairs  # noqa: E402
from tests.core.test_fuzz_io import FUZZ, files_of, json_values  # noqa: E402

VALID = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in [
    {"prompt": "describe the sun :", "chosen": " bright warm", "rejected": " dull"},
    {"prompt": [{"role": "user", "content": "hi"}],
     "chosen": [{"role": "assistant", "content": "hello"}],
     "rejected": [{"role": "assistant", "content": "go"}]},
    {"prompt": "é ü 中", "chosen": " calm", "rejected": " cold <eos>"},
])

texts = st.text(max_size=12) | st.sampled_from(["", " ", "<eos>", "<|user|>", "\n", "sun"])
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | st.text(max_size=4),
     "content": texts}) | json_values, max_size=3)
fields = texts | messages | json_values
rows = st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "extra"]), fields,
                       max_size=4) | json_values


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_pairs")


@pytest.fixture(scope="module")
def tokenizer():
    from descentlab.lm.tiny import train_tokenizer

    return train_tokenizer(["describe the sun : bright warm dull calm cold hi hello go"])


def _check(path, tokenizer, require_responses=True):
    try:
        got = load_pairs(path, require_responses=require_responses)
    except InputError as e:
        assert str(path) in e.line() and "\n" not in e.line(), e.line()
        return
    assert got and all(isinstance(r, dict) and "prompt" in r for r in got)
    if require_responses:
        try:
            pairs = tokenize_pairs(got, tokenizer, max_length=16, warn=False)
        except InputError as e:               # every row dropped: one line, names the limit
            assert e.where == "max_length" and "\n" not in e.line()
            return
        assert all(len(c) >= 1 and len(r) >= 1 for c, r in zip(pairs.chosen, pairs.rejected))


@FUZZ
@given(data=files_of(VALID))
def test_load_pairs_never_crashes_on_bytes(workdir, tokenizer, data):
    f = workdir / "pairs.jsonl"
    f.write_bytes(data)
    _check(f, tokenizer)


@FUZZ
@given(lines=st.lists(rows, min_size=1, max_size=4), require=st.booleans())
def test_load_pairs_never_crashes_on_row_structures(workdir, tokenizer, lines, require):
    f = workdir / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in lines))
    _check(f, tokenizer, require)
