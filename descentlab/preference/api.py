"""``train``: preference optimisation of a Hugging Face causal LM in one call (notebooks, the
CLI, benchmarks).

::

    from descentlab.preference import train
    res = train(model, tokenizer, "pairs.jsonl", loss="ipo", beta=0.5, max_steps=50)
    res.model                      # the trained Hugging Face model (peft model with LoRA)
    res.history[-1]["rewards/accuracies"]

Offline by default (any loss of :data:`~descentlab.preference.losses.LOSSES` but the
on-policy ones); on-policy (:mod:`~descentlab.preference.onpolicy`) when the loss samples
from the policy (``pdpo``) or ``onpolicy=`` is given. No output folder: nothing is
written (reference log-probs are computed in memory). With ``out_dir``: the log,
checkpoints and the reference cache go there, and ``resume``/``extend`` continue a run
(:mod:`descentlab.core.training`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from descentlab.preference.data import check_rows, load_pairs, validate_row
from descentlab.preference.losses import LOSSES, LossParams
from descentlab.preference.offline import PRESETS, PrefConfig, PrefTrainConfig, PrefTrainResult
from descentlab.preference.onpolicy import OnPolicyConfig

#: The configs whose fields ``train(**options)`` sets, in the order names are looked up.
OPTION_CONFIGS = (LossParams, PrefConfig, PrefTrainConfig, OnPolicyConfig)


def _split_options(options: Mapping[str, Any]) -> dict[type, dict[str, Any]]:
    """``{config class: {field: value}}`` for keyword options; an unknown name: TypeError."""
    out: dict[type, dict[str, Any]] = {cls: {} for cls in OPTION_CONFIGS}
    for name, value in options.items():
        cls = next((c for c in OPTION_CONFIGS
                    if name in {f.name for f in dataclasses.fields(c)}), None)
        if cls is None:
            raise TypeError(f"train() got an unknown option {name!r} (not a field of "
                            f"{', '.join(c.__name__ for c in OPTION_CONFIGS)})")
        out[cls][name] = value
    return out


def _rows(data: Any, what: str, *, require_responses: bool) -> list[dict] | None:
    """Rows from a path (:func:`load_pairs`) or a sequence of dicts (validated)."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return load_pairs(data, require_responses=require_responses)
    return check_rows([validate_row(r, f"{what}[{i}]", require_responses=require_responses)
                       for i, r in enumerate(data)], what)


def _device_of(model: Any):
    import torch

    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def train(model: Any, tokenizer: Any, data: str | os.PathLike | Sequence[dict],
          loss: str | None = None, *, preset: str = "default", params: LossParams | None = None,
          pref: PrefConfig | None = None, config: PrefTrainConfig | None = None,
          onpolicy: OnPolicyConfig | None = None, reward: str | Callable | None = None,
          eval_data: str | os.PathLike | Sequence[dict] | None = None, ref_model: Any = None,
          out_dir: str | os.PathLike | None = None, resume: bool = False, extend: bool = False,
          device: Any = None, model_source: str | os.PathLike | None = None,
          settings: dict[str, Any] | None = None, accelerator: Any = None,
          stop_at_step: int | None = None, on_step: Callable[[int], None] | None = None,
          **options: Any) -> PrefTrainResult:
    """Train ``model`` (a causal LM) with ``tokenizer`` on preference ``data``.

    ``data``: a JSONL file / ``save_to_disk`` folder (:func:`load_pairs`) or a list of TRL
    rows ``{"prompt", "chosen", "rejected"}`` (on-policy: ``prompt`` alone). ``loss``: a
    name of :data:`LOSSES` (default ``pref.loss``, i.e. ``dpo``; ``pdpo`` when
    ``onpolicy`` is given). Configs: ``params`` (:class:`LossParams`), ``pref``
    (:class:`PrefConfig`), ``config`` (:class:`PrefTrainConfig`, else
    ``PRESETS[preset]``: ``"default"`` for a pretrained model, ``"tiny"`` for a random-init
    one), ``onpolicy`` (:class:`OnPolicyConfig`); any field of them can also be given as a
    keyword (``beta=0.5, max_steps=20, lr=5e-4, seed=1``), which wins over the configs.
    ``reward``: on-policy oracle, a function ``(prompts, responses) -> rewards`` or a spec
    (default ``onpolicy.reward``). ``eval_data``: held-out pairs (logged as ``eval/…``).
    ``device``: default the model's. ``out_dir``: where the log, checkpoints and the
    reference cache go (None: nowhere); ``resume``/``extend``: continue its checkpoint
    (refused, naming the first difference, when a setting that changes the result
    differs; ``extend`` allows a new ``max_steps``). ``model_source``: the folder the model
    came from (a cheap fingerprint instead of hashing the weights); ``settings``: the
    caller's own extra settings that a resume must find unchanged.

    Returns a :class:`PrefTrainResult`: ``model`` (the trained Hugging Face model),
    ``history`` (one record per log step, TRL's metric names), ``step``, ``truncation``,
    ``max_length`` (capped at the model's context), file paths (None without ``out_dir``).
    """
    from descentlab.core.training import make_accelerator
    from descentlab.preference.offline import train_offline
    from descentlab.preference.onpolicy import train_onpolicy
    from descentlab.preference.oracles import load_reward

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    opts = _split_options(options)
    pref = pref or PrefConfig()
    on = onpolicy is not None
    if loss is None and on and not LOSSES[pref.loss].onpolicy:
        loss = "pdpo"
    pref = dataclasses.replace(pref, **opts[PrefConfig], **({"loss": loss} if loss else {}))
    on = on or LOSSES[pref.loss].onpolicy
    params = dataclasses.replace(params or LossParams(), **opts[LossParams])
    cfg = dataclasses.replace(config or PrefTrainConfig(**PRESETS[preset]),
                              **opts[PrefTrainConfig])
    onp = dataclasses.replace(onpolicy or OnPolicyConfig(), **opts[OnPolicyConfig])
    rows = _rows(data, "data", require_responses=not on)
    eval_rows = _rows(eval_data, "eval_data", require_responses=True)
    if cfg.eval_every and eval_rows is None:
        from descentlab.core.errors import InputError

        raise InputError("there is nothing to evaluate: give held-out pairs (eval_data)",
                         where="eval_every")
    acc = accelerator or make_accelerator(cfg.precision, device if device is not None
                                          else _device_of(model))
    common = dict(pref=pref, params=params, train_cfg=cfg, accelerator=acc,
                  out_dir=Path(out_dir) if out_dir is not None else None, ref_model=ref_model,
                  model_source=model_source, resume=resume, extend=extend, settings=settings,
                  stop_at_step=stop_at_step, on_step=on_step, eval_rows=eval_rows)
    if not on:
        return train_offline(model, tokenizer, rows, **common)
    fn = load_reward(reward or onp.reward, acc.device) if reward is None or isinstance(
        reward, str) else reward
    extra = {"reward": onp.reward if reward is None else
             reward if isinstance(reward, str) else _reward_name(fn)}
    return train_onpolicy(model, tokenizer, [r["prompt"] for r in rows], onp=onp, reward=fn,
                          **{**common, "settings": {**extra, **(settings or {})}})


def _reward_name(fn) -> str:
    """``module:qualname`` of a reward callable (of its class for a callable object): what a
    resume compares when the caller gives the function itself."""
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{named.__module__}:{named.__qualname__}"
