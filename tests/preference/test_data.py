"""TRL-format preference data: validation errors, tokenization, collation."""

import json

import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.preference.data import (
    collate_pairs,
    load_pairs,
    row_texts,
    synthetic_pairs,
    tokenize_pairs,
)

GOOD = {"prompt": "describe the sun :", "chosen": " warm bright", "rejected": " cold"}


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("bad,message", [
    ({"prompt": "p", "chosen": "c"}, "row 2: missing field 'rejected'"),
    ({"prompt": "p", "chosen": 3, "rejected": "r"}, "row 2: field 'chosen' must be a string"),
    ({"prompt": "  ", "chosen": "c", "rejected": "r"}, "row 2: field 'prompt' is empty"),
    ({"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant"}],
      "rejected": [{"role": "assistant", "content": "x"}]}, "row 2: field 'chosen', message 0"),
    ({"prompt": [{"role": "user", "content": "hi"}], "chosen": "text", "rejected": "text"},
     "row 2: field 'chosen' must be a non-empty list of messages"),
    ("{not json", ":2: invalid JSON"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, bad, message):
    path = write(tmp_path / "d.jsonl", [GOOD, bad])
    with pytest.raises(InputError) as e:
        load_pairs(path)
    assert str(path) in e.value.line() and message in e.value.line()


def test_onpolicy_rows_need_only_prompts(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "a b"}, {"prompt": "c"}])
    assert [r["prompt"] for r in load_pairs(path, require_responses=False)] == ["a b", "c"]
    with pytest.raises(InputError, match="missing field 'chosen'"):
        load_pairs(path)


def test_datasets_folder_equals_jsonl(tmp_path):
    import datasets

    rows = synthetic_pairs(5, seed=1)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert load_pairs(tmp_path / "ds") == load_pairs(write(tmp_path / "d.jsonl", rows))
    bad = [dict(r) for r in rows]
    bad[3]["rejected"] = " "
    bad[4]["chosen"] = None
    datasets.Dataset.from_list(bad).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(InputError, match=r"bad row 4: field 'rejected' is empty"):
        load_pairs(tmp_path / "bad")
    bad[3]["rejected"] = "fine"
    datasets.Dataset.from_list(bad).save_to_disk(str(tmp_path / "bad2"))
    with pytest.raises(InputError, match=r"bad2 row 5: missing field 'chosen'"):
        load_pairs(tmp_path / "bad2")


def test_plain_text_tokenization_appends_eos():
    rows = [GOOD]
    _, tok = build_tiny(row_texts(GOOD), TinyLMConfig())
    pairs = tokenize_pairs(rows, tok)
    assert pairs.prompt[0] == tok("describe the sun :", add_special_tokens=False).input_ids
    assert pairs.chosen[0] == tok(" warm bright<eos>", add_special_tokens=False).input_ids
    assert pairs.chosen[0][-1] == tok.eos_token_id and len(pairs.rejected[0]) == 2


def test_conversational_tokenization_uses_chat_template():
    row = {"prompt": [{"role": "user", "content": "hi there"}],
           "chosen": [{"role": "assistant", "content": "hello"}],
           "rejected": [{"role": "assistant", "content": "go away"}]}
    _, tok = build_tiny(row_texts(row), TinyLMConfig())
    pairs = tokenize_pairs([row], tok)
    assert tok.decode(pairs.prompt[0]) == "<|user|> hi there <eos> <|assistant|>"
    assert tok.decode(pairs.chosen[0]) == "hello <eos>"
    assert tok.decode(pairs.rejected[0]) == "go away <eos>"


def test_truncation_keeps_prompt_end_and_response_start():
    row = {"prompt": "a b c d e f", "chosen": " g h i j", "rejected": " k"}
    _, tok = build_tiny(row_texts(row), TinyLMConfig())
    pairs = tokenize_pairs([row], tok, max_length=6, max_prompt_length=2, truncation="keep_end",
                           warn=False)
    assert tok.decode(pairs.prompt[0]) == "e f"
    assert tok.decode(pairs.chosen[0]) == "g h i j"
    cut = tokenize_pairs([row], tok, max_length=5, max_prompt_length=2, truncation="keep_end",
                         warn=False)
    assert tok.decode(cut.chosen[0]) == "g h i"
    assert cut.truncation.as_dict() == {"mode": "keep_end", "max_length": 5, "rows": 1, "kept": 1,
                                        "dropped": 0, "prompts_cut": 1, "chosen_cut": 1,
                                        "rejected_cut": 0}


def test_collate_concatenates_chosen_then_rejected():
    rows = synthetic_pairs(3, seed=0)
    _, tok = build_tiny([t for r in rows for t in row_texts(r)], TinyLMConfig())
    pairs = tokenize_pairs(rows, tok)
    ref = torch.arange(6, dtype=torch.float32).view(3, 2)
    b = collate_pairs(pairs, [2, 0], tok.pad_token_id, ref)
    assert b["input_ids"].shape[0] == 4
    assert b["response_mask"].sum(1).tolist() == [len(pairs.chosen[2]), len(pairs.chosen[0]),
                                                   len(pairs.rejected[2]), len(pairs.rejected[0])]
    assert b["ref_logps"].tolist() == [4.0, 0.0, 5.0, 1.0]
    row0 = b["input_ids"][1, : b["attention_mask"][1].sum()].tolist()
    assert row0 == pairs.prompt[0] + pairs.chosen[0]
