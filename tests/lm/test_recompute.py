"""Selective recomputation: the same gradients as a plain backward, bitwise on CPU (GPT-2 with
dropout, a GQA Llama like SmolLM2), matmul / attention outputs kept and elementwise ops
recomputed, eval / no-grad forwards (generation) unchanged, and the preference trainers'
switches."""

import pytest
import torch

from descentlab.lm import recompute
from descentlab.lm.logprobs import SequenceScorer
from descentlab.lm.tiny import TinyLMConfig, build_tiny
from descentlab.preference.data import collate_pairs, row_texts, synthetic_pairs, tokenize_pairs
from descentlab.preference.offline import PrefConfig, prepare_model

ROWS = synthetic_pairs(8, seed=5)
TEXTS = [t for r in ROWS for t in row_texts(r)]


def tiny_llama(vocab: int, seed: int = 0):
    """A random-init Llama with grouped-query attention (4 heads, 2 kv heads), SDPA."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=80,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def grads_and_loss(model, tok, seed=0):
    torch.manual_seed(seed)
    pairs = tokenize_pairs(ROWS[:4], tok)
    b = collate_pairs(pairs, [0, 1, 2, 3], tok.pad_token_id)
    out = SequenceScorer(model.train())(b["input_ids"], b["attention_mask"], b["response_mask"])
    loss = -(out.sum * torch.arange(1.0, 9.0)).mean()
    loss.backward()
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return g, out.sum.detach()


@pytest.mark.parametrize("arch", ["gpt2-dropout", "llama-gqa"])
def test_selective_recompute_gives_bitwise_the_same_gradients(arch):
    results = []
    for selective in (False, True):
        if arch == "gpt2-dropout":
            model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=32, dropout=0.2), seed=0)
        else:
            _, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=16), seed=0)
            model = tiny_llama(len(tok))
        if selective:
            assert recompute.enable_selective_recompute(model) is True
        assert recompute.recompute_mode(model) == ("selective" if selective else "none")
        results.append(grads_and_loss(model, tok, seed=11))
    (g0, lp0), (g1, lp1) = results
    assert g0.abs().sum() > 0 and torch.isfinite(g0).all()
    assert torch.equal(lp0, lp1)      # same forward (dropout masks included)
    assert torch.equal(g0, g1)        # same backward, bitwise


def test_policy_keeps_matmuls_and_attention_recomputes_elementwise():
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    keep = CheckpointPolicy.MUST_SAVE
    for op in (aten.mm.default, aten.addmm.default, aten.bmm.default,
               aten._scaled_dot_product_flash_attention_for_cpu.default):
        assert recompute._policy(None, op) == keep, op
    for op in (aten.silu.default, aten.mul.Tensor, aten.pow.Tensor_Scalar, aten.rsqrt.default,
               aten.add.Tensor, aten.cat.default, aten.clone.default, aten.gelu.default):
        assert recompute._policy(None, op) == CheckpointPolicy.PREFER_RECOMPUTE, op


def test_selective_recompute_saves_fewer_bytes_than_a_plain_backward():
    """Bytes of every tensor kept for backward in one Llama block: the plain graph's saved
    tensors against the selective region's kept op outputs (its only storage)."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = tiny_llama(64)
    layer = model.model.layers[0].train()
    x = torch.randn(2, 24, 32, requires_grad=True)
    pos = torch.arange(24)[None].expand(2, -1)
    emb = model.model.rotary_emb(x, pos)

    def run(h):
        return layer(h, attention_mask=None, position_ids=pos, position_embeddings=emb)

    seen: dict[int, int] = {}
    skip = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    skip |= {x.untyped_storage().data_ptr(), emb[0].untyped_storage().data_ptr(),
             emb[1].untyped_storage().data_ptr()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:            # weights, the block's input and rotary tables
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run(x).sum().backward()
    plain = sum(seen.values())

    kept: list[int] = []

    def policy(ctx, op, *args, **kwargs):
        decision = recompute._policy(ctx, op, *args, **kwargs)
        if not ctx.is_recompute and decision == torch.utils.checkpoint.CheckpointPolicy.MUST_SAVE:
            kept.append(op)
        return decision

    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    y = checkpoint(run, x, use_reentrant=False,
                   context_fn=lambda: create_selective_checkpoint_contexts(policy))
    y.sum().backward()
    # kept: q, k, v, o, gate, up, down projections (mm) and the attention op
    names = sorted(str(op).split(".")[1] for op in kept)
    assert names.count("mm") == 7 and any("scaled_dot_product" in n for n in names), names
    # what the selective region stores: the outputs of the ops its policy saves, measured on
    # the same forward
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    selective = 0

    class KeptBytes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal selective
            out = func(*args, **(kwargs or {}))
            if recompute._policy(None, func) == torch.utils.checkpoint.CheckpointPolicy.MUST_SAVE:
                selective += sum(t.untyped_storage().nbytes() for t in tree_leaves(out)
                                 if isinstance(t, torch.Tensor))
            return out

    with KeptBytes():
        run(x)
    print(f"bytes kept for backward: plain {plain}, selective {selective}")
    assert 0 < selective < 0.6 * plain, (selective, plain)


def test_eval_and_no_grad_forwards_are_unchanged():
    _, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=16), seed=0)
    outs = []
    for selective in (False, True):
        model = tiny_llama(len(tok), seed=3)
        if selective:
            recompute.enable_selective_recompute(model)
        ids = torch.tensor([[5, 6, 7, 8]])
        with torch.no_grad():
            gen = model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                        max_new_tokens=6, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
            logits = model.train()(input_ids=gen).logits     # train mode, no grad
        outs.append((gen, logits))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][0].shape[1] == 10
    assert torch.equal(outs[0][1], outs[1][1])


def test_prepare_model_switches():
    def mode(device=None, **kw):
        model, tok = build_tiny(TEXTS, TinyLMConfig(n_embd=16), seed=0)
        model = prepare_model(model, tok, PrefConfig(**kw), device)
        layers = [m.gradient_checkpointing for m in model.transformer.h]
        return recompute.recompute_mode(model), layers

    assert mode() == ("selective", [True, True])                       # the default: CPU
    assert mode("cpu") == ("selective", [True, True])
    assert mode("cuda") == ("none", [False, False])                    # auto: not on GPUs
    assert mode("cuda", selective_recompute="on") == ("selective", [True, True])
    assert mode(selective_recompute="off") == ("none", [False, False])
    assert mode(gradient_checkpointing=True) == ("full", [True, True])
    assert mode(gradient_checkpointing=True, selective_recompute="off") == ("full", [True, True])


def test_a_model_without_block_checkpointing_is_left_alone():
    class Plain(torch.nn.Module):
        supports_gradient_checkpointing = False

    m = Plain()
    assert recompute.enable_selective_recompute(m) is False
    assert recompute.recompute_mode(m) == "none"
