"""Sequence log-probs: custom autograd functions and masking against naive computations."""

import pytest
import torch

from descentlab.lm.logprobs import (
    SequenceScorer,
    fused_head_logprobs,
    sequence_logps,
    token_logprobs,
)
from descentlab.lm.tiny import TinyLMConfig, build_tiny


def test_token_logprobs_matches_log_softmax_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.randint(0, 7, (2, 5), generator=g)
    ref = torch.log_softmax(x, -1).gather(-1, lab[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(x, lab), ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, lab), (x,))


def test_fused_head_matches_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(11, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.randint(0, 11, (9,), generator=g)
    ref = torch.log_softmax(h @ w.t() + b, -1).gather(-1, lab[:, None]).squeeze(-1)
    assert torch.allclose(fused_head_logprobs(h, w, b, lab), ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda h, w, b: fused_head_logprobs(h, w, b, lab), (h, w, b))


def test_chunking_does_not_change_values(monkeypatch):
    import descentlab.lm.logprobs as L

    g = torch.Generator().manual_seed(2)
    h, w = torch.randn(13, 4, generator=g), torch.randn(6, 4, generator=g)
    lab = torch.randint(0, 6, (13,), generator=g)
    full = fused_head_logprobs(h, w, None, lab)
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", 12)   # 2 rows per chunk
    assert torch.allclose(fused_head_logprobs(h, w, None, lab), full, atol=1e-6)


def _batch(prompts, responses, side):
    T = max(len(p) + len(r) for p, r in zip(prompts, responses))
    n = len(prompts)
    ids = torch.zeros(n, T, dtype=torch.long)
    am = torch.zeros(n, T, dtype=torch.long)
    rm = torch.zeros(n, T, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        L = len(p) + len(r)
        o = T - L if side == "left" else 0
        ids[i, o:o + L] = torch.tensor(p + r)
        am[i, o:o + L] = 1
        rm[i, o + len(p):o + L] = True
    return ids, am, rm


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("fused", [True, False])
def test_masked_sequence_logps_equal_naive(side, fused):
    model, _ = build_tiny(["a b c d e f g h i j k l m"], TinyLMConfig(n_embd=32))
    model.eval()
    prompts = [[5, 6, 7], [8], [9, 10]]
    responses = [[11, 12], [13, 14, 15, 16], [4]]
    out = SequenceScorer(model, fused)(*_batch(prompts, responses, side))
    for i, (p, r) in enumerate(zip(prompts, responses)):
        logp = torch.log_softmax(model(torch.tensor([p + r])).logits[0], -1)  # (L, V)
        naive = sum(logp[len(p) - 1 + k, r[k]] for k in range(len(r)))
        assert out.sum[i].item() == pytest.approx(naive.item(), abs=1e-4)
        assert out.n_tokens[i].item() == len(r)
        assert out.mean[i].item() == pytest.approx(naive.item() / len(r), abs=1e-4)


def test_fused_and_logits_routes_have_equal_gradients():
    model, _ = build_tiny(["a b c d e f g h i j k l m"], TinyLMConfig(n_embd=32))
    batch = _batch([[5, 6, 7], [8]], [[11, 12], [13, 14, 15, 16]], "right")
    grads = []
    for fused in (True, False):
        model.zero_grad()
        SequenceScorer(model, fused)(*batch).sum.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_logits_to_keep_route_equals_full_logits():
    model, _ = build_tiny(["a b c d e f g h"], TinyLMConfig(n_embd=32))
    batch = _batch([[5, 6, 7, 8, 9], [4, 5, 6]], [[7], [8, 9]], "left")
    a = sequence_logps(model, *batch, use_logits_to_keep=True).sum
    b = sequence_logps(model, *batch, use_logits_to_keep=False).sum
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_scorer_keeps_cudnn_attention_off_during_its_forward_only(fused):
    """cuDNN attention builds a plan per new padded length (~0.5 s each on an H200): the
    scorer's forwards must run with it disabled, and leave the global setting as it was."""
    model, _ = build_tiny(["a b c d e f g h"], TinyLMConfig(n_embd=32))
    seen = []
    hook = model.transformer.h[0].register_forward_hook(
        lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    before = torch.backends.cuda.cudnn_sdp_enabled()
    SequenceScorer(model, fused)(*_batch([[5, 6], [7]], [[8], [9, 4]], "left"))
    hook.remove()
    assert seen == [False]
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
