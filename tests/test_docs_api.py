"""Every ```python block of docs/api.md runs, in a fresh namespace inside an empty folder."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _title(block: str) -> str:
    head = DOC.read_text(encoding="utf-8").split(block)[0]
    return re.findall(r"^## (.*)$", head, flags=re.M)[-1]


def test_the_page_has_an_example_per_wing():
    titles = {_title(b).split()[0] for b in BLOCKS}
    assert {"Planning", "Preference", "Retrieval-augmented"} <= titles


@pytest.mark.parametrize("block", BLOCKS, ids=[_title(b) for b in BLOCKS])
def test_snippet_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCENTLAB_PROGRESS", "0")
    exec(compile(block, f"{DOC.name}: {_title(block)}", "exec"), {"__name__": "__docs__"})
    assert not any(tmp_path.iterdir()), "a snippet without an output folder wrote files"
