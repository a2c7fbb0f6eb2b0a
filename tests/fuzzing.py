"""Shared strategies of the fuzz tests: random bytes, random JSON, mutations of a valid
file, and the check that a loader either works or raises one InputError line naming it.

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200).
"""

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from descentlab.core.errors import InputError

EXAMPLES = int(os.environ.get("DESCENTLAB_FUZZ_EXAMPLES", "200"))
# derandomize: the same inputs on every run, so a CI result is reproducible
# (DESCENTLAB_FUZZ_SEED=random explores new ones)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get("DESCENTLAB_FUZZ_SEED") != "random",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=10)


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` after 1-4 random edits: truncation, byte flips, insertions, deletions,
    a duplicated line, a line replaced by random bytes or by random JSON."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "dup_line",
                                   "junk_line", "json_line"]))
        i = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[i:]
        elif op == "flip" and data:
            data[min(i, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            lines = bytes(data).split(b"\n")
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(j, lines[j])
            elif op == "junk_line":
                lines[j] = draw(st.binary(max_size=24))
            else:
                lines[j] = json.dumps(draw(json_values),
                                      ensure_ascii=draw(st.booleans())).encode()
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def files_of(valid: bytes):
    """Random bytes, random JSON lines, or mutations of ``valid``."""
    lines = st.lists(json_values.map(lambda v: json.dumps(v).encode()), max_size=5)
    return st.one_of(st.binary(max_size=200), lines.map(b"\n".join), mutated(valid))


def _clean(fn, path):
    """``fn()`` either works or raises an InputError whose line names ``path``."""
    try:
        fn()
    except InputError as e:
        assert str(path) in e.line(), e.line()
        assert "\n" not in e.line(), e.line()
