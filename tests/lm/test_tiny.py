"""Tiny GPT-2 + locally trained tokenizer: special tokens, chat template, save/load."""

import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.core.training import save_pretrained
from descentlab.lm.tiny import (
    SPECIAL_TOKENS,
    TinyLMConfig,
    build_tiny,
    load_model_and_tokenizer,
)

TEXTS = ["the cat sat on the mat .", "a dog ran , fast !", "hello world"]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_tokenizer_specials_and_chat_template(kind):
    model, tok = build_tiny(TEXTS, TinyLMConfig(tokenizer=kind, vocab_size=300, n_embd=32))
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert all(len(tok(t, add_special_tokens=False).input_ids) == 1 for t in SPECIAL_TOKENS)
    assert model.get_input_embeddings().weight.shape == (len(tok), 32)
    msgs = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "the cat"}]
    full = tok.apply_chat_template(msgs, tokenize=False)
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert full == "<|user|>hello world<eos><|assistant|>the cat<eos>"
    assert full.startswith(prompt) and prompt.endswith("<|assistant|>")
    ids = tok("the cat sat", add_special_tokens=False).input_ids
    assert tok.decode(ids) == "the cat sat"


def test_word_tokenizer_unknown_and_determinism():
    _, tok = build_tiny(TEXTS)
    ids = tok("the zebra", add_special_tokens=False).input_ids
    assert ids[1] == tok.unk_token_id and len(ids) == 2
    _, tok2 = build_tiny(TEXTS)
    assert tok2.get_vocab() == tok.get_vocab()


def test_seeded_init_and_roundtrip(tmp_path):
    m1, tok = build_tiny(TEXTS, seed=3)
    m2, _ = build_tiny(TEXTS, seed=3)
    m3, _ = build_tiny(TEXTS, seed=4)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not torch.equal(s1["transformer.h.0.attn.c_attn.weight"],
                           s3["transformer.h.0.attn.c_attn.weight"])
    save_pretrained(m1, tok, tmp_path / "m")
    m4, tok4 = load_model_and_tokenizer(tmp_path / "m")
    s4 = m4.state_dict()
    assert all(torch.equal(s1[k], s4[k]) for k in s1)
    assert tok4.get_vocab() == tok.get_vocab() and tok4.chat_template == tok.chat_template
    x = torch.tensor([tok("the cat sat", add_special_tokens=False).input_ids])
    assert torch.equal(m1(x).logits, m4(x).logits)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model_and_tokenizer(tmp_path / "missing")
    with pytest.raises(InputError, match="divisible"):
        TinyLMConfig(n_embd=30, n_head=4)
    with pytest.raises(InputError, match="needs texts"):
        load_model_and_tokenizer("tiny")
