"""Language-model plumbing shared by the preference and RAG wings: tiny models built from a
config (no download) and per-sequence log-probabilities.

::

    from descentlab.lm import TinyLMConfig, build_tiny, sequence_logps
    model, tok = build_tiny(["a few texts", "to train the tokenizer on"], TinyLMConfig())
    out = sequence_logps(model, input_ids, attention_mask, response_mask)   # (B,) each
    out.sum, out.mean, out.n_tokens
"""

from descentlab.core.lazy import lazy_exports

# name -> module: imported on first use (PEP 562); torch / transformers load when used.
_EXPORTS = {
    "TinyLMConfig": "tiny", "build_tiny": "tiny", "build_tiny_model": "tiny",
    "train_tokenizer": "tiny", "load_model_and_tokenizer": "tiny",
    "context_length": "tiny",
    "sequence_logps": "logprobs", "SequenceLogps": "logprobs", "SequenceScorer": "logprobs",
    "token_logprobs": "logprobs", "collate_sequences": "logprobs",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
