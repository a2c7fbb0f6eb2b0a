"""On-policy PDPO: oracles and labels, deterministic sampling, exact resume, learning."""

import math
import re

import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.core.training import make_accelerator
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.preference.data import row_texts, synthetic_pairs
from descentlab.preference.losses import LossParams
from descentlab.preference.offline import PrefConfig, PrefTrainConfig
from descentlab.preference.onpolicy import (
    OnPolicyConfig,
    sample_pairs,
    sampled_lengths,
    train_onpolicy,
)
from descentlab.preference.oracles import good_words, label, load_reward, score

ROWS = synthetic_pairs(32, seed=0)
TEXTS = [t for r in ROWS for t in row_texts(r)]


def test_deterministic_labels_and_ties():
    ra, rb = torch.tensor([1.0, 0.0, 2.0, 2.0]), torch.tensor([0.0, 1.0, 2.0, 2.0])
    wins = [label(ra, rb, generator=torch.Generator().manual_seed(s)) for s in range(40)]
    assert all(w[:2].tolist() == [True, False] for w in wins)
    ties = torch.stack([w[2:] for w in wins]).float().mean().item()
    assert 0.25 < ties < 0.75          # a fair coin on ties, not always one side


def test_bradley_terry_frequency_matches_sigmoid():
    n = 20000
    ra, rb = torch.full((n,), 1.0), torch.zeros(n)
    freq = label(ra, rb, "bt", 2.0, torch.Generator().manual_seed(0)).float().mean().item()
    assert freq == pytest.approx(1 / (1 + math.exp(-0.5)), abs=0.01)


def test_reward_specs():
    assert good_words(["p"] * 3, ["warm kind", "cold warm", "x"]) == [1.0, 0.0, 0.0]
    fn = load_reward("descentlab.preference.oracles:length")
    assert score(fn, ["p", "p"], ["a b c", ""]).tolist() == [3.0, 0.0]
    with pytest.raises(InputError, match="cannot import"):
        load_reward("no_such_module_xyz:f")
    with pytest.raises(InputError, match="module:function"):
        load_reward("nonsense")
    with pytest.raises(InputError, match="returned"):
        score(lambda p, r: [1.0], ["a", "b"], ["x", "y"])


def test_sampling_is_deterministic_per_seed():
    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32))
    prompts = [tok("describe the sun :", add_special_tokens=False).input_ids, [5]]
    cfg = OnPolicyConfig(max_new_tokens=6)
    cpu = torch.device("cpu")
    a1 = sample_pairs(model, tok, prompts, cfg, 7, cpu)
    a2 = sample_pairs(model, tok, prompts, cfg, 7, cpu)
    b = sample_pairs(model, tok, prompts, cfg, 8, cpu)
    assert a1 == a2 and a1 != b
    for resp in a1[0] + a1[1]:
        assert 1 <= len(resp) <= 6
        assert tok.eos_token_id not in resp[:-1]


class _Scripted(torch.nn.Module):
    """A "policy" whose generate returns the given continuations (2 per prompt)."""

    def __init__(self, new_tokens: list[list[int]]):
        super().__init__()
        self.new = torch.tensor(new_tokens)

    def generate(self, input_ids, **kw):
        return torch.cat([input_ids.repeat_interleave(2, 0), self.new], 1)


def test_sampled_responses_are_scored_exactly_as_sampled():
    """Tokens after the first eos are generate's padding; nothing else is dropped: a sampled
    pad id (pad ≠ eos) stays, and an eos equal to the pad id is kept once."""
    _, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32))
    pad, eos, w, v = tok.pad_token_id, tok.eos_token_id, 7, 9
    assert pad != eos
    cfg, cpu = OnPolicyConfig(max_new_tokens=4), torch.device("cpu")
    a, b = sample_pairs(_Scripted([[w, pad, pad, pad], [w, eos, pad, pad]]), tok, [[5]], cfg, 0,
                        cpu)
    assert a == [[w, pad, pad, pad]] and b == [[w, eos]]     # no eos: all 4 sampled tokens
    tok.pad_token = tok.eos_token                              # pad == eos
    assert tok.pad_token_id == eos
    a, b = sample_pairs(_Scripted([[w, eos, eos, eos], [w, v, w, v]]), tok, [[5]], cfg, 0, cpu)
    assert a == [[w, eos]] and b == [[w, v, w, v]]
    assert sampled_lengths(torch.tensor([[eos, eos], [w, w]]), eos).tolist() == [1, 2]
    assert sampled_lengths(torch.tensor([[w, 4, w]]), [4, 6]).tolist() == [2]
    assert sampled_lengths(torch.tensor([[w, eos]]), None).tolist() == [2]


def test_pad_equal_to_eos_scores_the_sampled_log_probs():
    """With pad == eos, the sequence log-prob the trainer scores equals the sum of the
    sampler's own per-step log-probs up to and including the first eos."""
    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_sequences

    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=1)
    tok.pad_token = tok.eos_token
    prompts = [tok("describe the sun :", add_special_tokens=False).input_ids,
               tok("describe the road :", add_special_tokens=False).input_ids]
    cfg, cpu = OnPolicyConfig(max_new_tokens=10), torch.device("cpu")
    seed = 11
    a, b = sample_pairs(model, tok, prompts, cfg, seed, cpu)
    # the same generate call, with its per-step logits (temperature 1, no top-k: π itself)
    P = max(map(len, prompts))
    ids = torch.full((2, P), tok.pad_token_id)
    attn = torch.zeros(2, P, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):], attn[i, P - len(p):] = torch.tensor(p), 1
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=1.0,
                             top_k=0, top_p=1.0, max_new_tokens=10, num_return_sequences=2,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             output_logits=True, return_dict_in_generate=True)
    steps = torch.stack(out.logits, 1).log_softmax(-1)                     # (4, new, V)
    picked = steps.gather(-1, out.sequences[:, P:, None]).squeeze(-1)      # (4, new)
    responses = [a[0], b[0], a[1], b[1]]
    assert any(len(r) < 10 and r[-1] == tok.eos_token_id for r in responses)
    for i, r in enumerate(responses):
        assert r == out.sequences[i, P:P + len(r)].tolist()
    batch = collate_sequences([prompts[0]] * 2 + [prompts[1]] * 2, responses, tok.pad_token_id)
    with torch.no_grad():
        scored = SequenceScorer(model)(batch["input_ids"], batch["attention_mask"],
                                       batch["response_mask"])
    want = torch.stack([picked[i, :len(r)].sum() for i, r in enumerate(responses)])
    assert scored.n_tokens.tolist() == [len(r) for r in responses]
    torch.testing.assert_close(scored.sum, want, rtol=1e-4, atol=1e-4)


def _run(out, steps, stop=None, resume=False, lr=2e-3):
    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)
    cfg = PrefTrainConfig(max_steps=steps, log_every=2, save_every=2, batch_size=8, lr=lr,
                          warmup_steps=0, precision="no")
    return train_onpolicy(model, tok, [r["prompt"] for r in ROWS],
                          pref=PrefConfig(loss="pdpo"), params=LossParams(beta=0.5),
                          onp=OnPolicyConfig(max_new_tokens=8), train_cfg=cfg, out_dir=out,
                          accelerator=make_accelerator("no", "cpu"), reward=good_words,
                          resume=resume, stop_at_step=stop)


def test_onpolicy_resume_is_bitwise_identical(tmp_path):
    full = _run(tmp_path / "a", 4)
    _run(tmp_path / "b", 4, stop=2)
    done = _run(tmp_path / "b", 4, resume=True)
    sa, sb = full.model.state_dict(), done.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.history == done.history
    for key in ("oracle/reward", "pdpo/objective", "rewards/accuracies", "lengths/chosen"):
        assert key in full.history[-1]
    # labels follow the oracle: the chosen sample never has the lower reward
    assert all(r["oracle/reward_chosen"] >= r["oracle/reward_rejected"] for r in full.history)


def test_pdpo_raises_the_oracle_reward(tmp_path):
    res = _run(tmp_path, 30, lr=3e-3)
    first = sum(r["oracle/reward"] for r in res.history[:3]) / 3
    last = sum(r["oracle/reward"] for r in res.history[-3:]) / 3
    assert last > first + 0.1


def test_onpolicy_prompts_are_fitted_and_counted_like_offline_pairs(tmp_path):
    """fit_prompts: drop drops prompts of max_length tokens or more, keep_end keeps their last
    max_length // 2. On-policy training cuts (keep_end) and counts: result.truncation and a
    warning with the share."""
    from descentlab.preference.data import fit_prompts, tokenize_prompt

    model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32), seed=0)
    words = ROWS[0]["prompt"].split() * 10
    prompts = [" ".join(words[:n]) for n in (3, 5, 11, 12, 20)]
    lengths = [len(tokenize_prompt(tok, p)) for p in prompts]
    assert lengths == [3, 5, 11, 12, 20]            # the word tokenizer: one id per word

    kept, index, rep = fit_prompts([tokenize_prompt(tok, p) for p in prompts], max_length=12,
                                   warn=False)
    assert index == [0, 1, 2] and [len(k) for k in kept] == [3, 5, 11]
    assert rep.as_dict() == {"mode": "drop", "max_length": 12, "rows": 5, "kept": 3,
                             "dropped": 2, "prompts_cut": 0, "chosen_cut": 0,
                             "rejected_cut": 0}
    ids = [tokenize_prompt(tok, p) for p in prompts]
    kept, index, rep = fit_prompts(ids, max_length=12, truncation="keep_end", warn=False)
    assert index == [0, 1, 2, 3, 4] and [len(k) for k in kept] == [3, 5, 6, 6, 6]
    assert kept[4] == ids[4][-6:]                    # the end is kept
    assert (rep.dropped, rep.prompts_cut, rep.affected) == (0, 3, 3)
    with pytest.raises(InputError, match="every prompt was dropped"):
        fit_prompts([ids[4]], max_length=12, warn=False)

    cfg = PrefTrainConfig(max_steps=1, log_every=1, batch_size=2, lr=1e-3, warmup_steps=0,
                          precision="no")
    # on-policy prompts keep their end (never dropped), whatever truncation says
    for truncation in ("drop", "keep_end"):
        with pytest.warns(UserWarning, match=re.escape("3/5 prompts (60%) dropped or cut")):
            res = train_onpolicy(
                model, tok, prompts, pref=PrefConfig(loss="pdpo", max_length=12,
                                                     truncation=truncation),
                params=LossParams(beta=0.5), onp=OnPolicyConfig(max_new_tokens=4),
                train_cfg=cfg, out_dir=None, accelerator=make_accelerator("no", "cpu"),
                reward=good_words)
        assert res.truncation.as_dict() == {"mode": "keep_end", "max_length": 12, "rows": 5,
                                            "kept": 5, "dropped": 0, "prompts_cut": 3,
                                            "chosen_cut": 0, "rejected_cut": 0}
        assert res.max_length == 12
