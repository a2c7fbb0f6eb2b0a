"""``descentlab.preference`` / ``descentlab.lm`` as a library: ``train`` returns the Hugging
Face model and writes nothing without an output folder; resume refuses every changed
setting before any work; max_length is capped at the model's context."""

import dataclasses
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import descentlab.preference.reference as reference
from descentlab.core.errors import InputError
from descentlab.lm import TinyLMConfig, build_tiny, sequence_logps
from descentlab.preference import Logps, LossParams, load_pairs, preference_loss, train
from descentlab.preference.api import _split_options
from descentlab.preference.data import collate_pairs, row_texts, synthetic_pairs, tokenize_pairs

ROWS = synthetic_pairs(32, seed=0)
TEXTS = [t for r in ROWS for t in row_texts(r)]
SMALL = TinyLMConfig(n_embd=32, n_positions=64)


def tiny(seed=0, config=SMALL):
    return build_tiny(TEXTS, config, seed=seed)


def test_importing_the_wings_loads_no_torch():
    code = ("import sys, descentlab.preference, descentlab.lm; "
            "print('torch' in sys.modules, sorted(descentlab.preference.__all__)[:2])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split(maxsplit=1)
    assert out[0] == "False" and out[1].strip() == "['LABELERS', 'LOSSES']"


def test_preference_loss_is_the_hand_computed_dpo():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    rc, rr = torch.tensor([-3.5, -4.0]), torch.tensor([-3.5, -3.0])
    losses, metrics = preference_loss("dpo", Logps(pc, pr, rc, rr), LossParams(beta=0.5))
    z = 0.5 * ((pc - rc) - (pr - rr))                    # [0.25, -1.5]
    assert torch.allclose(losses, -F.logsigmoid(z))
    assert metrics["rewards/accuracies"].item() == 0.5
    assert metrics["rewards/margins"].item() == pytest.approx(float(z.mean()))
    default, _ = preference_loss("dpo", Logps(pc, pr, rc, rr))       # LossParams() = β 0.1
    assert torch.allclose(default, -F.logsigmoid(0.2 * z))


def test_train_without_out_dir_returns_the_hf_model_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, tok = tiny()
    pairs = tokenize_pairs(ROWS, tok, max_length=64)
    batch = collate_pairs(pairs, list(range(len(pairs))), tok.pad_token_id)
    x = (batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    with torch.no_grad():
        before = sequence_logps(model, *x).sum
    res = train(model, tok, ROWS, loss="dpo", preset="tiny", max_steps=16, log_every=8,
                batch_size=8, warmup_steps=2)
    assert list(tmp_path.iterdir()) == []
    assert type(res.model).__name__ == "GPT2LMHeadModel" and res.model is model
    assert res.log_path is None and res.checkpoint_path is None and res.step == 16
    assert [r["step"] for r in res.history] == [8, 16]
    assert res.history[-1]["lr"] < 5e-4 and res.history[-1]["rewards/accuracies"] >= 0.9
    with torch.no_grad():
        after = sequence_logps(res.model.eval(), *x).sum
    n = len(pairs)
    # chosen responses gained log-probability relative to the rejected ones
    assert ((after[:n] - before[:n]) - (after[n:] - before[n:])).mean() > 0.5


def test_out_dir_gives_the_same_run_plus_its_files(tmp_path):
    kw = dict(loss="ipo", preset="tiny", max_steps=3, log_every=1, batch_size=4, beta=0.5)
    a = train(*tiny(), ROWS, **kw)
    b = train(*tiny(), ROWS, out_dir=tmp_path / "o", **kw)
    assert a.history == b.history
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "checkpoint.pt", "ref_cache", "train_log.jsonl"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_options_go_to_their_config_and_unknown_ones_are_a_type_error():
    from descentlab.preference import OnPolicyConfig, PrefConfig, PrefTrainConfig

    split = _split_options({"beta": 0.3, "lora_r": 4, "lr": 1e-3, "top_k": 5})
    assert split == {LossParams: {"beta": 0.3}, PrefConfig: {"lora_r": 4},
                     PrefTrainConfig: {"lr": 1e-3}, OnPolicyConfig: {"top_k": 5}}
    with pytest.raises(TypeError, match="unknown option 'betta'"):
        train(None, None, ROWS, betta=0.1)
    with pytest.raises(InputError) as e:
        train(*tiny(), ROWS, eval_every=2)
    assert e.value.where == "eval_every"
    with pytest.raises(InputError, match=r"^data\[1\]: field 'chosen' is empty"):
        train(*tiny(), [ROWS[0], {**ROWS[1], "chosen": ""}])


def test_load_pairs_reads_what_train_takes(tmp_path):
    import json

    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:4]))
    assert load_pairs(f) == ROWS[:4]


# ---- resume: every changed setting refused before any work ------------------------------

BASE = dict(loss="dpo", preset="tiny", max_steps=4, log_every=2, batch_size=4, seed=0)
CHANGED = {     # what changes -> (the keyword arguments, the setting the error names)
    "loss": ({"loss": "ipo"}, "loss"),
    "beta": ({"beta": 0.2}, "beta"),
    "label_smoothing": ({"label_smoothing": 0.1}, "label_smoothing"),
    "sft_weight": ({"sft_weight": 0.5}, "sft_weight"),
    "data": ({"data": ROWS[:24]}, "data"),
    "max_length": ({"max_length": 16}, "max_length"),
    "model": ({"model_seed": 1}, "model"),
    "ref": ({"ref": "live"}, "ref"),
    "lora_r": ({"lora_r": 2}, "lora_r"),
    "weight_decay": ({"weight_decay": 0.01}, "weight_decay"),
    "adam_beta2": ({"adam_beta2": 0.99}, "adam_beta2"),
    "max_grad_norm": ({"max_grad_norm": 0.5}, "max_grad_norm"),
    "min_lr_ratio": ({"min_lr_ratio": 0.1}, "min_lr_ratio"),
    "schedule": ({"schedule": "linear"}, "schedule"),
    "precision": ({"precision": "bf16"}, "precision"),
    "grad_accum": ({"grad_accum": 2}, "grad_accum"),
    "seed": ({"seed": 1}, "seed"),
    "max_steps": ({"max_steps": 6}, "max_steps"),
    "settings": ({"settings": {"tiny_n_embd": 16}}, "tiny_n_embd"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    train(*tiny(), ROWS, out_dir=out, **BASE)
    return out


@pytest.mark.parametrize("case", list(CHANGED))
def test_resume_refuses_a_changed_setting_before_any_work(finished, monkeypatch, case):
    kw, name = CHANGED[case]
    kw = dict(kw)
    data = kw.pop("data", ROWS)
    model, tok = tiny(seed=kw.pop("model_seed", 0))

    def boom(*a, **k):
        raise AssertionError("work was done before the resume check")
    monkeypatch.setattr(reference, "compute_reference_logps", boom)
    with pytest.raises(InputError) as e:
        train(model, tok, data, out_dir=finished, resume=True, **{**BASE, **kw})
    assert e.value.where == "resume"
    assert e.value.message.startswith(f"{name} differs: checkpoint "), e.value.message


def test_resume_of_a_finished_run_is_a_no_op_and_extend_trains_on(finished, tmp_path):
    same = train(*tiny(), ROWS, out_dir=finished, resume=True, **BASE)
    assert same.step == 4 and [r["step"] for r in same.history] == [2, 4]
    ext = train(*tiny(), ROWS, out_dir=finished, resume=True, extend=True,
                **{**BASE, "max_steps": 6})
    assert ext.step == 6 and [r["step"] for r in ext.history] == [2, 4, 6]
    assert ext.history[:2] == same.history


# ---- the model's context ----------------------------------------------------------------

LONG = [{"prompt": "describe the sun :", "chosen": " " + " ".join(["bright"] * 80),
         "rejected": " " + " ".join(["dull"] * 70)}] * 4


def test_max_length_defaults_to_the_context_and_a_longer_one_is_capped_with_a_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = train(*tiny(), LONG, preset="tiny", max_steps=1, batch_size=2)
    assert not [w for w in seen if "context" in str(w.message)]     # none for the default
    assert any("4/4 rows (100%) dropped or cut" in str(w.message) for w in seen)
    assert res.context == 64 and res.max_length == 64
    assert res.truncation.chosen_cut == 4 and res.truncation.rejected_cut == 4
    with pytest.warns(UserWarning, match=r"max_length 512 exceeds the model's context "
                                         r"\(64 positions\): using max_length 64"):
        capped = train(*tiny(), LONG, preset="tiny", max_steps=1, batch_size=2,
                       max_length=512)
    assert capped.max_length == 64 and torch.isfinite(torch.tensor(capped.history[-1]["loss"]))


def test_onpolicy_prompts_and_samples_fit_the_context():
    long_prompts = [{"prompt": " ".join(["sun"] * 200)} for _ in range(4)]
    res = train(*tiny(config=dataclasses.replace(SMALL, n_positions=40)), long_prompts,
                loss="pdpo", preset="tiny", max_steps=1, batch_size=2, max_new_tokens=8)
    assert res.context == 40 and res.max_length == 32        # 40 positions − 8 sampled
    assert res.history[-1]["sample/tokens"] > 0


def test_resume_refuses_another_reward_function_of_the_same_name(tmp_path):
    import types

    from descentlab.preference.oracles import good_words

    twin = types.FunctionType(good_words.__code__, good_words.__globals__, "good_words")
    twin.__module__ = "someone.elses.rewards"  # same name, another function
    kw = dict(loss="pdpo", preset="tiny", max_steps=2, log_every=1, batch_size=4, seed=0,
              max_new_tokens=4)
    train(*tiny(), ROWS, reward=good_words, out_dir=tmp_path / "run", **kw)
    with pytest.raises(InputError) as e:
        train(*tiny(), ROWS, reward=twin, out_dir=tmp_path / "run", resume=True, **kw)
    assert e.value.message == ("reward differs: checkpoint "
                               "descentlab.preference.oracles:good_words, now "
                               "someone.elses.rewards:good_words"), e.value.message


def test_in_memory_rows_get_the_same_checks_as_a_file():
    chat = {"prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    mixed = [ROWS[0], chat]
    with pytest.raises(InputError) as e:
        train(*tiny(), mixed, **BASE)
    assert e.value.where == "data" and "mixes plain-text and conversational" in e.value.message
