"""Preference optimisation (SPEC parts C–D): the DPO family, the proper on-policy loss.

The public API — what the CLI, the demo and the benchmarks call::

    from descentlab.lm import build_tiny
    from descentlab.preference import load_pairs, train
    rows = load_pairs("pairs.jsonl")                  # TRL rows: prompt / chosen / rejected
    model, tok = build_tiny([t for r in rows for t in (r["prompt"], r["chosen"])])
    res = train(model, tok, rows, loss="dpo", preset="tiny", max_steps=20)
    res.model, res.history[-1]["rewards/accuracies"]  # the Hugging Face model, TRL metrics

    from descentlab.preference import Logps, preference_loss
    losses, metrics = preference_loss("ipo", Logps(pc, pr, rc, rr, lc, lr))  # tensors only

Modules: losses (the LOSSES registry), data (loading, tokenizing, collation), offline and
onpolicy (the trainers on :mod:`descentlab.core.training`), api (``train``), oracles
(rewards and labels), viz, experiments (the bandit and length labs).
"""

from descentlab.core.lazy import lazy_exports

# name -> module: imported on first use (PEP 562), so `import descentlab.preference` (and
# the CLI's --help) stays cheap and torch loads only when something is used.
_EXPORTS = {
    "train": "api",
    "load_pairs": "data", "synthetic_pairs": "data", "tokenize_pairs": "data",
    "TokenizedPairs": "data", "TruncationReport": "data", "TRUNCATIONS": "data",
    "LOSSES": "losses", "Logps": "losses", "LossParams": "losses", "LossTerms": "losses",
    "preference_loss": "losses",
    "PRESETS": "offline", "PrefConfig": "offline", "PrefTrainConfig": "offline",
    "PrefTrainResult": "offline",
    "OnPolicyConfig": "onpolicy",
    "LABELERS": "oracles", "load_reward": "oracles",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
