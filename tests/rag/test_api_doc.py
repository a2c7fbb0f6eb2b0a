"""The notebook example of docs/api-rag.md runs and its assertions hold."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "api-rag.md"


def test_api_page_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)  # nothing may be written: checked below
    exec(compile(blocks[0], str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[(1, ") and "'steps': 20" in out[1]
    assert list(tmp_path.iterdir()) == []
