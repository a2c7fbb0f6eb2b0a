"""Offline trainer: separable task, reference cache, live vs cached reference, resume, LoRA."""

import pytest
import torch

import descentlab.preference.reference as reference
from descentlab.core.training import make_accelerator
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.preference.data import row_texts, synthetic_pairs
from descentlab.preference.losses import LossParams
from descentlab.preference.offline import PrefConfig, train_config_for, train_offline

ROWS = synthetic_pairs(48, seed=0)
TEXTS = [t for r in ROWS for t in row_texts(r)]


def run(out, *, loss="dpo", steps=8, stop=None, resume=False, ref="precomputed", lora=0,
        beta=0.1, log_every=4, **kw):
    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)
    cfg = train_config_for("tiny", max_steps=steps, log_every=log_every, save_every=4,
                           batch_size=8, warmup_steps=2, precision="no")
    return train_offline(model, tok, ROWS, pref=PrefConfig(loss=loss, ref=ref, lora_r=lora),
                         params=LossParams(beta=beta), train_cfg=cfg, out_dir=out,
                         accelerator=make_accelerator("no", "cpu"), resume=resume,
                         stop_at_step=stop, **kw)


def test_separable_task_reaches_high_reward_accuracy(tmp_path):
    res = run(tmp_path, steps=24, log_every=6)
    last = res.history[-1]
    assert last["rewards/accuracies"] >= 0.9
    assert last["rewards/margins"] > 0.2
    assert last["loss"] < res.history[0]["loss"] < 0.7
    assert last["logps/rejected"] < res.history[0]["logps/rejected"]


def test_resume_bitwise_and_reference_cache_reused(tmp_path, monkeypatch):
    full = run(tmp_path / "a")
    run(tmp_path / "b", stop=4)
    assert len(list((tmp_path / "b" / "ref_cache").glob("ref-*.pt"))) == 1

    def boom(*a, **k):
        raise AssertionError("reference log-probs recomputed despite the cache")
    monkeypatch.setattr(reference, "compute_reference_logps", boom)
    done = run(tmp_path / "b", resume=True)
    sa, sb = full.model.state_dict(), done.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.history == done.history


def test_live_reference_equals_precomputed(tmp_path):
    a = run(tmp_path / "a", steps=2, log_every=1)
    b = run(tmp_path / "b", steps=2, log_every=1, ref="live")
    for ra, rb in zip(a.history, b.history):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)
        assert ra["rewards/margins"] == pytest.approx(rb["rewards/margins"], abs=1e-5)
    assert not (tmp_path / "b" / "ref_cache").exists()


def test_lora_trains_adapters_only_and_live_reference_disables_them(tmp_path):
    res = run(tmp_path, steps=4, lora=4, ref="live", beta=0.5)
    peft_model = res.model
    base = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)[0].state_dict()
    changed = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert changed and all("lora_" in n for n in changed)
    for name, p in peft_model.get_base_model().named_parameters():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(p.detach(), base[key]), name
    assert res.history[-1]["rewards/margins"] != 0.0


def test_reference_free_losses_skip_the_reference(tmp_path):
    res = run(tmp_path, loss="simpo", steps=2, beta=2.0)
    assert not (tmp_path / "ref_cache").exists()
    assert "lengths/chosen" in res.history[-1]
