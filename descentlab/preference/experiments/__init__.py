"""Preference experiments (SPEC C–D, issue 5): where does DPO's probability mass go, and does
the proper loss remove the length bias?

* :mod:`.bandit` — exact, tabular (or log-linear) softmax policies over K responses per
  prompt: π(y₊), π(y₋), mass on never-sampled responses, expected true reward, KL, entropy.
* :mod:`.length` — a tiny causal LM on a synthetic language whose chosen and rejected
  responses share one length distribution: generated length, true reward, held-out
  preference accuracy, log-probs over training, per-example gradient norm against length
  (measurements in :mod:`.length_metrics`).
* :mod:`.variants` — the loss settings compared (names like ``dpo_bg_g0.5``), built on
  :data:`descentlab.preference.losses.LOSSES`.
* :mod:`.viz` — the figures.

Each lab exposes ``Config`` (a dataclass: CLI flags come from it), ``QUICK`` (the ``--quick``
overrides) and ``run(cfg, out_dir, seed, device) -> dict`` returning
``{"experiment": name, "losses": {NAME: {...}}, ...}``.
"""

EXPERIMENTS: dict[str, str] = {
    "bandit": "descentlab.preference.experiments.bandit",
    "length": "descentlab.preference.experiments.length",
}
