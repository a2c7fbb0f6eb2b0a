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


def test_every_truncation_fits_max_length_and_reports_truthfully():
    """For every mode, max_length and max_prompt_length (even >= max_length): each prompt +
    response has at most max_length tokens and at least one response token, the kept tokens
    are the prompt's end (keep_end) or whole prompt (drop) and the responses' starts, and
    the report counts exactly the rows dropped and the parts cut."""
    rows = [{"prompt": " ".join(["sun"] * n), "chosen": " warm" * m, "rejected": " cold" * 2}
            for n in (1, 2, 3, 5, 8, 13, 21) for m in (1, 2, 5, 13)]
    _, tok = build_tiny([t for r in rows for t in row_texts(r)], TinyLMConfig())
    full = tokenize_pairs(rows, tok, max_length=10**6, warn=False)     # nothing cut
    for mode in ("drop", "keep_end"):
        for max_length in range(2, 26):
            for max_prompt in (None, 1, 3, max_length - 1, max_length, 100):
                if mode == "drop" and all(len(p) >= max_length for p in full.prompt):
                    continue                                # every row dropped: InputError
                got = tokenize_pairs(rows, tok, max_length=max_length,
                                     max_prompt_length=max_prompt, truncation=mode, warn=False)
                rep, case = got.truncation, (mode, max_length, max_prompt)
                if mode == "keep_end":
                    assert got.rows == list(range(len(rows))), case
                    keep = min(max_prompt or max_length // 2, max_length - 1)
                else:
                    assert got.rows == [k for k, p in enumerate(full.prompt)
                                        if len(p) < max_length
                                        and (max_prompt is None or len(p) <= max_prompt)], case
                    keep = max_length
                cut = [0, 0, 0]
                for i, k in enumerate(got.rows):
                    p, c, r = got.prompt[i], got.chosen[i], got.rejected[i]
                    assert len(p) + max(len(c), len(r)) <= max_length, case
                    assert c and r, case
                    assert len(p) == min(len(full.prompt[k]), keep), case
                    assert p == full.prompt[k][len(full.prompt[k]) - len(p):], case
                    assert c == full.chosen[k][:len(c)] and r == full.rejected[k][:len(r)], case
                    assert len(c) == min(len(full.chosen[k]), max_length - len(p)), case
                    for j, (a, b) in enumerate(((p, full.prompt[k]), (c, full.chosen[k]),
                                                (r, full.rejected[k]))):
                        cut[j] += len(a) < len(b)
                assert rep.dropped == len(rows) - len(got), case
                assert [rep.prompts_cut, rep.chosen_cut, rep.rejected_cut] == cut, case


@pytest.mark.parametrize("kwargs, where", [({"max_length": 1}, "max_length"),
                                           ({"max_prompt_length": 0}, "max_prompt_length")])
@pytest.mark.parametrize("mode", ["drop", "keep_end"])
def test_impossible_length_limits_are_refused_naming_the_argument(kwargs, where, mode):
    _, tok = build_tiny(row_texts(GOOD), TinyLMConfig())
    with pytest.raises(InputError, match=f"^{where}: must be at least"):
        tokenize_pairs([GOOD], tok, **{"max_length": 8, **kwargs}, truncation=mode)
