"""Property-based fuzzing of the rag loaders (corpus JSONL and text folders, probes, merge
results, index folders): never a traceback, always an InputError naming the file.

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200); see tests/core/test_fuzz_io.py.
"""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from descentlab.rag.corpus import load_corpus  # noqa: E402
from descentlab.rag.experiment import merge_results  # noqa: E402
from descentlab.rag.scoring import load_probes  # noqa: E402
from tests.core.test_fuzz_io import FUZZ, _clean, files_of, json_values, mutated  # noqa: E402

FIELDS = ("id", "text", "entity", "prompt", "answer", "candidates")


@st.composite
def rows(draw):
    """JSONL of objects whose fields are sometimes right and sometimes any JSON value."""
    out = []
    for i in range(draw(st.integers(0, 4))):
        row = {"id": f"d{i}", "text": "alpha beta", "entity": "e", "prompt": "X lives in",
               "answer": "Paris", "candidates": ["Paris", "Rome"]}
        for f in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
            if draw(st.booleans()):
                row.pop(f, None)
            else:
                row[f] = draw(json_values)
        out.append(json.dumps(row, ensure_ascii=draw(st.booleans())).encode())
    return b"\n".join(out)


VALID_CORPUS = b"".join(json.dumps({"id": f"d{i}", "text": f"doc {i} text", "entity": f"e{i}"})
                        .encode() + b"\n" for i in range(3))
VALID_PROBES = b"".join(json.dumps({"prompt": f"P{i} lives in", "answer": "Rome",
                                    "candidates": ["Rome", "Oslo"], "entity": f"e{i}"})
                        .encode() + b"\n" for i in range(3))


def _result(seed: int) -> dict:
    row = {"qa_em_train": 0.5, "ppl_retrieval": 3.0, "memorisation_ratio": None}
    return {"preset": "tiny", "seeds": [seed], "config": {"train": {"lr": 0.001}},
            "variants": {"full": {**row, "per_seed": [row]},
                         "split": {**row, "per_seed": [row]}},
            "retrieval": {"recall_at_k": 1.0, "per_seed": [{"recall_at_k": 1.0}]},
            "loss_curves": {"full": [3.0, 2.0], "split": [3.0, 2.5]}, "log_every": 1,
            "seconds": 1.5}


VALID_RESULT = json.dumps(_result(1), indent=1).encode()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_rag")


@FUZZ
@given(data=st.one_of(files_of(VALID_CORPUS), rows()))
def test_corpus_jsonl_never_crashes(workdir, data):
    f = workdir / "corpus.jsonl"
    f.write_bytes(data)
    _clean(lambda: load_corpus(f), f)


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["a.txt", "sub/b.txt", "sub/deep/c.txt", "x.md",
                                              "sub/d.txt"]),
                             st.one_of(st.binary(max_size=40), st.text(max_size=20).map(
                                 lambda t: t.encode("utf-8", "surrogatepass"))), max_size=4))
def test_corpus_text_folder_never_crashes(files):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "docs"
        root.mkdir()
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        _clean(lambda: load_corpus(root), root)


@FUZZ
@given(data=st.one_of(files_of(VALID_PROBES), rows()))
def test_probes_never_crash(workdir, data):
    f = workdir / "probes.jsonl"
    f.write_bytes(data)
    _clean(lambda: load_probes(f), f)


@FUZZ
@given(data=st.one_of(files_of(VALID_RESULT), mutated(VALID_RESULT),
                      json_values.map(lambda v: json.dumps(v).encode())))
def test_merge_results_never_crash(workdir, data):
    from descentlab.core.io import read_json

    good = workdir / "r0.json"
    good.write_text(json.dumps(_result(0)))
    f = workdir / "r1.json"
    f.write_bytes(data)
    _clean(lambda: merge_results([read_json(good), read_json(f)], names=[str(good), str(f)]),
           f)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from descentlab.rag.corpus import Corpus, Document
    from descentlab.rag.retrieval import BM25Index

    d = tmp_path_factory.mktemp("fuzz_index") / "idx"
    BM25Index(Corpus([Document(f"d{i}", f"alpha beta doc{i}", f"e{i}") for i in range(3)])
              ).save(d)
    return d


@FUZZ
@given(which=st.sampled_from(["descentlab_index.json", "documents.jsonl"]), data=st.data())
def test_index_folder_never_crashes(index_dir, which, data):
    from descentlab.rag.retrieval import BM25Index

    valid = (index_dir / which).read_bytes()
    blob = data.draw(st.one_of(files_of(valid), mutated(valid)))
    with tempfile.TemporaryDirectory() as d:
        idx = Path(d) / "idx"
        shutil.copytree(index_dir, idx)
        (idx / which).write_bytes(blob)
        _clean(lambda: BM25Index.load(idx), idx)
