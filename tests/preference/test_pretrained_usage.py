"""What a real pretrained model needs (issue 11, "Real models"), on tiny local models:
BOS as TRL adds it, TRL's length handling with counts, held-out evaluation on the eval
schedule, pretrained-model defaults, .gguf errors, gradient checkpointing, a base model with
conversational data, dpo_bg's TRL-comparable rewards."""

import copy
import json
import warnings

import pytest
import torch

from descentlab.cli.main import main
from descentlab.core.errors import InputError
from descentlab.core.training import make_accelerator, save_pretrained
from descentlab.lm.tiny import (
    TinyLMConfig,
    build_tiny,
    build_tiny_model,
    load_model_and_tokenizer,
)
from descentlab.preference.data import row_texts, synthetic_pairs, tokenize_pairs
from descentlab.preference.losses import Logps, LossParams, preference_loss
from descentlab.preference.offline import (
    PrefConfig,
    PrefTrainConfig,
    train_config_for,
    train_offline,
)

ROWS = synthetic_pairs(32, seed=3)
TEXTS = [t for r in ROWS for t in row_texts(r)]


def bos_tokenizer(texts):
    """A word-level tokenizer whose post-processor adds ``<s>`` to every encoding, as
    Gemma's / Llama-2's do (built locally: no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- 1. BOS ----------------------------------------------------------------------------

def test_plain_text_prompt_gets_the_tokenizers_bos():
    tok = bos_tokenizer(TEXTS)
    row = {"prompt": "describe the sun :", "chosen": " warm bright", "rejected": " cold"}
    pairs = tokenize_pairs([row], tok)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    words = tok("describe the sun :", add_special_tokens=False)["input_ids"]
    assert pairs.prompt[0] == [bos] + words                 # BOS once, at the start
    assert pairs.chosen[0] == tok(" warm bright", add_special_tokens=False)["input_ids"] + [eos]
    assert pairs.rejected[0][-1] == eos and bos not in pairs.chosen[0] + pairs.rejected[0]
    # a tokenizer that adds no BOS (the tiny one) keeps prompts without it
    _, plain = build_tiny(TEXTS)
    assert tokenize_pairs([row], plain).prompt[0][0] != plain.bos_token_id


def test_tokenization_equals_trls_dpo_trainer_with_a_bos_tokenizer(tmp_path):
    trl = pytest.importorskip("trl")
    import datasets

    tok = bos_tokenizer(TEXTS)
    model = build_tiny_model(TinyLMConfig(n_embd=16, n_layer=1), tok)
    rows = ROWS[:6]
    args = trl.DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False,
                         gradient_checkpointing=False, max_length=512)
    trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                             processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(rows))
    pairs = tokenize_pairs(rows, tok)
    for i, ex in enumerate(trainer.train_dataset):
        assert (ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]) == \
            (pairs.prompt[i], pairs.chosen[i], pairs.rejected[i])


# ---- 2. truncation -----------------------------------------------------------------------

def test_default_drops_rows_whose_prompt_fills_max_length_and_reports_counts():
    tok = bos_tokenizer(TEXTS + ["a b c d e f g h"])
    rows = [{"prompt": "a b c d e f g", "chosen": " h", "rejected": " a"},     # 8 ids with BOS
            {"prompt": "a b", "chosen": " c d e f g h", "rejected": " d"},      # chosen cut
            {"prompt": "a", "chosen": " b", "rejected": " c"}]                  # fits
    with pytest.warns(UserWarning, match=r"2/3 rows \(67%\) dropped or cut"):
        pairs = tokenize_pairs(rows, tok, max_length=8)
    assert pairs.rows == [1, 2]
    assert pairs.truncation.as_dict() == {"mode": "drop", "max_length": 8, "rows": 3, "kept": 2,
                                          "dropped": 1, "prompts_cut": 0, "chosen_cut": 1,
                                          "rejected_cut": 0}
    assert len(pairs.prompt[0]) + len(pairs.chosen[0]) == 8        # keep_start, as TRL
    assert pairs.prompt[0] == tok("a b")["input_ids"]              # the prompt is intact
    # the option: prompts keep their end instead, nothing is dropped
    kept = tokenize_pairs(rows, tok, max_length=8, max_prompt_length=4, truncation="keep_end",
                          warn=False)
    assert kept.rows == [0, 1, 2] and kept.truncation.prompts_cut == 1
    assert kept.prompt[0] == tok("a b c d e f g")["input_ids"][-4:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # nothing cut: no warning
        assert tokenize_pairs(rows[2:], tok, max_length=8).truncation.dropped == 0
    with pytest.raises(InputError, match="every row was dropped"):
        tokenize_pairs(rows[:1], tok, max_length=8)


def test_cli_prints_truncation_counts(tmp_path, capsys):
    data = write_rows(tmp_path / "d.jsonl", ROWS[:8])
    assert main(["prefopt", "train", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--max-steps", "1", "--batch-size", "2", "--max-length", "8",
                 "--n-embd", "16", "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert "train data: max_length 8 (drop)" in capsys.readouterr().out
    t = res["truncation"]
    assert t["rows"] == 8 and t["kept"] + t["dropped"] == 8 and t["chosen_cut"] > 0


# ---- 3. held-out evaluation ----------------------------------------------------------------

def _train(tmp_path, **kw):
    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)
    cfg = train_config_for("tiny", max_steps=4, log_every=4, eval_every=2, batch_size=8,
                           warmup_steps=0, precision="no")
    res = train_offline(model, tok, ROWS[:24], pref=PrefConfig(**kw), params=LossParams(),
                        train_cfg=cfg, out_dir=tmp_path, accelerator=make_accelerator("no"),
                        eval_rows=ROWS[24:])
    return res, tok


def test_eval_data_is_scored_on_the_eval_schedule_and_matches_a_direct_score(tmp_path):
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_pairs

    res, tok = _train(tmp_path)
    evals = [r for r in res.history if "eval/rewards/accuracies" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[-1]["eval/pairs"] == 8 and res.eval_truncation.kept == 8
    # recompute the last eval by hand: final model vs the initial one on the held-out pairs
    pairs = tokenize_pairs(ROWS[24:], tok)
    b = collate_pairs(pairs, list(range(8)), tok.pad_token_id)
    x = (b["input_ids"], b["attention_mask"], b["response_mask"])
    init = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)[0]
    with torch.no_grad():
        now = SequenceScorer(res.model.eval())(*x)
        ref = SequenceScorer(init.eval())(*x).sum
    dc, dr = now.sum[:8] - ref[:8], now.sum[8:] - ref[8:]
    last = evals[-1]
    assert last["eval/logps_delta/chosen"] == pytest.approx(float(dc.mean()), abs=1e-4)
    assert last["eval/logps_delta/rejected"] == pytest.approx(float(dr.mean()), abs=1e-4)
    assert last["eval/rewards/accuracies"] == pytest.approx(float((dc > dr).float().mean()))
    assert last["eval/rewards/margins"] == pytest.approx(0.1 * float((dc - dr).mean()), abs=1e-5)
    assert last["eval/logps_delta/margins"] > 0                    # learnt on held-out pairs


def test_cli_eval_data_logged_plotted_and_eval_every_without_data_is_an_error(tmp_path, capsys):
    train = write_rows(tmp_path / "d.jsonl", ROWS[:24])
    held = write_rows(tmp_path / "e.jsonl", ROWS[24:])
    out = tmp_path / "o"
    base = ["prefopt", "train", "--data", str(train), "--out", str(out), "--max-steps", "2",
            "--n-embd", "16", "--eval-every", "1"]
    assert main(base + ["--eval-data", str(held), "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["step"] for r in res["history"] if "eval/loss" in r] == [1, 2]
    assert "eval/rewards/accuracies" in res["summary"]
    from descentlab.preference.viz import PANELS
    assert any("eval/logps_delta/chosen" in keys for keys in PANELS.values())
    assert (out / "training.png").stat().st_size > 0
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--eval-every" in err[0] and "held-out pairs" in err[0]


# ---- 4. defaults -----------------------------------------------------------------------------

def test_defaults_suit_a_pretrained_model_and_tiny_sets_its_own(tmp_path):
    assert PrefTrainConfig().lr == 1e-6                           # TRL's DPOConfig default
    assert train_config_for("tiny").lr == 5e-4
    assert train_config_for("some/folder").lr == 1e-6
    data = write_rows(tmp_path / "d.jsonl", ROWS[:8])
    common = ["prefopt", "train", "--data", str(data), "--max-steps", "1", "--n-embd", "16"]
    for extra, lr in (([], 5e-4), (["--lr", "2e-5"], 2e-5)):
        assert main(common + ["--out", str(tmp_path / str(lr)), "--json",
                              str(tmp_path / "r.json"), *extra]) == 0
        assert json.loads((tmp_path / "r.json").read_text())["config"]["train"]["lr"] == lr


# ---- 5. .gguf --------------------------------------------------------------------------------

def test_gguf_errors_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(InputError, match="GGUF file not found"):
        load_model_and_tokenizer(tmp_path / "missing.gguf")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(InputError, match=r"needs the 'gguf' package: pip install 'descentlab\[real\]'"):
        load_model_and_tokenizer(tmp_path / "m.gguf")
    data = write_rows(tmp_path / "d.jsonl", ROWS[:4])
    assert main(["prefopt", "train", "--data", str(data), "--model",
                 str(tmp_path / "m.gguf")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_model_fingerprint_of_a_file_follows_its_content(tmp_path):
    from descentlab.preference.reference import model_fingerprint

    f = tmp_path / "m.gguf"
    f.write_bytes(b"one")
    a = model_fingerprint(None, f)
    f.write_bytes(b"other!")
    assert model_fingerprint(None, f) != a


# ---- 6. gradient checkpointing -------------------------------------------------------------

def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.recompute import recompute_mode
    from descentlab.preference.data import collate_pairs
    from descentlab.preference.offline import prepare_model

    grads = []
    for ckpt in (False, True):
        model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)
        model = prepare_model(model, tok, PrefConfig(gradient_checkpointing=ckpt,
                                                     selective_recompute="off")).train()
        assert recompute_mode(model) == ("full" if ckpt else "none")
        pairs = tokenize_pairs(ROWS[:4], tok)
        b = collate_pairs(pairs, [0, 1, 2, 3], tok.pad_token_id)
        SequenceScorer(model)(b["input_ids"], b["attention_mask"], b["response_mask"]).sum.sum() \
            .backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


# ---- 7. base model + conversational data -----------------------------------------------

def test_base_model_without_chat_template_and_conversations_is_one_line_exit_2(tmp_path, capsys):
    conv = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in ROWS[:8]]
    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=16))
    template = tok.chat_template
    tok.chat_template = None
    folder = save_pretrained(model, tok, tmp_path / "base")
    data = write_rows(tmp_path / "c.jsonl", conv)
    args = ["prefopt", "train", "--data", str(data), "--model", str(folder), "--max-steps", "1",
            "--batch-size", "2"]
    assert main(args + ["--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chat-template" in err[0] and "plain-text" in err[0]
    assert main(args + ["--onpolicy", "--out", str(tmp_path / "o2")]) == 2
    assert "--chat-template" in capsys.readouterr().err
    (tmp_path / "t.jinja").write_text(template)
    assert main(args + ["--chat-template", str(tmp_path / "t.jinja"),
                        "--out", str(tmp_path / "o3")]) == 0


# ---- 8. dpo_bg rewards ---------------------------------------------------------------------

def test_dpo_bg_logs_trl_rewards_and_its_own_margin_separately():
    pc, pr = torch.tensor([-10.0, -12.0]), torch.tensor([-11.0, -9.0])
    rc, rr = torch.tensor([-10.5, -14.0]), torch.tensor([-10.0, -9.5])
    beta, gamma = 0.2, 0.05
    lp = Logps(pc, pr, rc, rr, torch.tensor([3, 4]), torch.tensor([2, 5]))
    _, m = preference_loss("dpo_bg", lp, LossParams(beta=beta, gamma=gamma))
    _, d = preference_loss("dpo", lp, LossParams(beta=beta))
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert float(m[k]) == pytest.approx(float(d[k]))            # TRL's β log π/π₀
    assert float(m["rewards/chosen"]) == pytest.approx(beta * float((pc - rc).mean()))
    z = beta * (pc - pr) - gamma * (rc - rr)                          # [0.225, -0.375]
    assert float(m["dpo_bg/margins"]) == pytest.approx(float(z.mean()))
    assert float(m["dpo_bg/accuracies"]) == 0.5                      # z > 0 for pair 0 only
    assert float(m["rewards/accuracies"]) == 1.0                     # Δπ − Δπ₀ > 0 for both
    # γ = 0 (no reference): rewards are β log π, as a reference-free loss logs them
    _, f = preference_loss("dpo_bg", Logps(pc, pr), LossParams(beta=beta, gamma=0.0))
    assert float(f["rewards/chosen"]) == pytest.approx(beta * float(pc.mean()))
