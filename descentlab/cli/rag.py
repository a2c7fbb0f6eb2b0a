"""``descentlab rag``: retrieval-augmented LM training (SPEC part E).

Subcommands: ``experiment`` (the grounding experiment, presets tiny/small), ``index`` (a BM25
index of a corpus), ``train`` (a model on a corpus with one objective variant) and ``eval``
(perplexity with/without retrieval, cloze QA from a probes file).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from descentlab.cli.options import add_config_args, config_from_args
from descentlab.core.outputs import folder
from descentlab.core.table import format_table
from descentlab.core.training import TrainConfig
from descentlab.lm.tiny import TinyLMConfig
from descentlab.rag.experiment import PRESETS, REQUIRED_FIELDS, RagExperimentConfig
from descentlab.rag.objective import RagObjectiveConfig

CORPUS_HELP = "documents: a JSONL file ({id, text, entity} per line) or a folder of .txt files"


def _configs(args: argparse.Namespace, preset: str | None):
    p = PRESETS[preset] if preset else {"experiment": {}, "model": {}, "train": {},
                                        "objective": {}}
    exp = config_from_args(RagExperimentConfig, args,
                           base=RagExperimentConfig(**p["experiment"]))
    if getattr(args, "seeds", None) is None and args.seed != 0:
        exp = dataclasses.replace(exp, seeds=(args.seed,))
    model = config_from_args(TinyLMConfig, args, base=TinyLMConfig(**p["model"]))
    train = config_from_args(TrainConfig, args, base=TrainConfig(**p["train"]))
    obj = config_from_args(RagObjectiveConfig, args, base=RagObjectiveConfig(**p["objective"]))
    return exp, model, train, obj


def experiment_table(result: dict) -> str:
    cols = ["arm", *REQUIRED_FIELDS, "qa_em_train_closed_book", "qa_em_train_distractor"]
    rows = []
    for arm, v in result["variants"].items():
        row = {"arm": arm}
        for k in cols[1:]:
            m, s = v.get(k), v.get(f"{k}_std", 0.0)
            ok = m is not None and m == m and s is not None
            row[k] = f"{m:.3g}±{s:.2g}" if len(result["seeds"]) > 1 and ok else m
        rows.append(row)
    return format_table(rows, cols)


def run_experiment_cmd(args: argparse.Namespace) -> dict:
    from descentlab.rag.experiment import run_experiment
    from descentlab.rag.viz import plot_experiment

    exp, model, train, obj = _configs(args, args.preset)
    out = Path(args.out)
    result = run_experiment(exp, model, train, obj, out, device=args.device, resume=args.resume,
                            preset=args.preset)
    result["figures"] = [str(p) for p in plot_experiment(result, out)]
    print(experiment_table(result))
    r = result["retrieval"]
    print(f"\nretrieval recall@{obj.k}={r['recall_at_k']:.3f}  recall@1={r['recall_at_1']:.3f}; "
          f"{result['seconds']:.0f}s; figures under {out}/")
    return result


def run_merge(args: argparse.Namespace) -> dict:
    from descentlab.core.io import read_json
    from descentlab.rag.experiment import merge_results
    from descentlab.rag.viz import plot_experiment

    result = merge_results([read_json(p) for p in args.results], names=list(args.results))
    result["figures"] = [str(p) for p in plot_experiment(result, args.out)]
    print(experiment_table(result))
    return result


def run_index(args: argparse.Namespace) -> dict:
    from descentlab.rag.corpus import load_corpus
    from descentlab.rag.retrieval import BM25Index

    corpus = load_corpus(args.corpus)
    index = BM25Index(corpus, k1=args.k1, b=args.b, method=args.method)
    path = index.save(args.out, overwrite=args.overwrite)
    result = {"docs": len(corpus), "entities": len(corpus.entity_names),
              "vocab": len(index.vocab), "index": str(path)}
    print(format_table([result]))
    return result


def _load_model(args, texts):
    from descentlab.lm.tiny import load_model_and_tokenizer

    tiny = config_from_args(TinyLMConfig, args) if args.model == "tiny" else None
    return load_model_and_tokenizer(args.model, texts=texts, tiny=tiny, seed=args.seed)


def _max_length(model) -> int | None:
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


def run_train(args: argparse.Namespace) -> dict:
    import numpy as np

    from descentlab.core.training import save_pretrained, train
    from descentlab.rag.corpus import load_corpus
    from descentlab.rag.objective import RagData, suffix_loss
    from descentlab.rag.retrieval import build_retriever

    corpus = load_corpus(args.corpus)
    n_targets = len(corpus)
    if args.retrieval_corpus:
        corpus = corpus.extended(load_corpus(args.retrieval_corpus).docs)
    trainable = np.arange(len(corpus)) < n_targets
    obj = config_from_args(RagObjectiveConfig, args)
    tcfg = dataclasses.replace(config_from_args(TrainConfig, args), seed=args.seed)
    model, tokenizer = _load_model(args, corpus.texts)
    retriever = build_retriever(args.retriever, corpus)
    data = RagData(corpus, trainable, tokenizer, retriever, obj, seed=args.seed,
                   max_length=_max_length(model))
    out = Path(args.out)
    res = train(model, suffix_loss, data.batch_fn(), tcfg, out, resume=args.resume,
                device=args.device, desc=f"rag {obj.variant}")
    save_pretrained(res, out / "model", tokenizer)
    result = {"variant": obj.variant, "steps": res.step, "docs": len(corpus),
              "targets_per_epoch": data.n_per_epoch,
              "final_loss": res.history[-1].get("loss") if res.history else None,
              "model": str(out / "model"), "seconds": round(res.seconds, 2)}
    print(format_table([result]))
    return result


def run_eval(args: argparse.Namespace) -> dict:
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.rag import evaluate as ev
    from descentlab.rag.corpus import load_corpus
    from descentlab.rag.retrieval import build_retriever

    corpus = load_corpus(args.corpus)
    probes = ev.load_probes(args.probes) if args.probes else None  # all input checked first
    model, tokenizer = load_model_and_tokenizer(args.model)
    from descentlab.core.seeding import resolve_device

    dev = resolve_device(args.device)
    model.to(dev)
    retriever = build_retriever(args.retriever, corpus)
    reader = ev.Reader(model, tokenizer, k=args.k, budget=args.context_tokens, device=str(dev))
    docs = list(range(len(corpus)))[: args.max_docs]
    result = {"docs": len(docs),
              "ppl_no_retrieval": ev.perplexity(reader, corpus, docs, None, seed=args.seed),
              "ppl_retrieval": ev.perplexity(reader, corpus, docs, retriever, seed=args.seed)}
    if probes:
        for name, r in (("no_retrieval", None), ("retrieval", retriever)):
            s = ev.score_probes(reader, probes, r)
            result[f"qa_em_{name}"] = float(s["em"].mean())
            result[f"qa_acc_{name}"] = float(s["candidate_acc"].mean())
    print(format_table([result]))
    return result


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """The tiny preset (every arm, one seed): for ``descentlab demo``."""
    from descentlab.rag.experiment import run_experiment
    from descentlab.rag.viz import plot_experiment

    p = PRESETS["tiny"]
    exp = RagExperimentConfig(**{**p["experiment"], "seeds": (getattr(args, "seed", 0),)})
    result = run_experiment(exp, TinyLMConfig(**p["model"]), TrainConfig(**p["train"]),
                            RagObjectiveConfig(**p["objective"]), out_dir,
                            device=getattr(args, "device", "cpu"), preset="tiny",
                            log=lambda *_: None)
    plot_experiment(result, out_dir)
    v = result["variants"]
    result["summary"] = {
        "arms": len(v),
        "split_counterfactual_follow_rate": v["split"]["counterfactual_follow_rate"],
        "full_counterfactual_follow_rate": v["full"]["counterfactual_follow_rate"],
        "retrieval_recall_at_k": result["retrieval"]["recall_at_k"],
    }
    return result


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args

    rag = sub.add_parser("rag", help="retrieval-augmented LM training (SPEC part E)",
                         description=__doc__.split("\n\n")[0])
    rs = rag.add_subparsers(dest="rag_command", required=True, metavar="SUBCOMMAND")

    p = rs.add_parser("experiment", help="the grounding experiment: every variant, one budget",
                      description="Train one tiny GPT-2 per variant on synthetic biographies "
                                  "and measure whether it follows the retrieved documents.")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny",
                   help="sizes: tiny (minutes, tests/demo) or small (the report) "
                        "(default: %(default)s); flags below override it")
    p.add_argument("--out", default="rag-experiment", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue runs that have checkpoints")
    add_config_args(p, RagExperimentConfig)
    add_config_args(p, RagObjectiveConfig, skip=("variant", "exclude"))
    add_config_args(p, TinyLMConfig)
    add_config_args(p, TrainConfig)
    add_common_args(p)
    p.set_defaults(run=run_experiment_cmd, outputs=(folder("out", recognise=("seed0",)),))

    p = rs.add_parser("merge", help="merge experiment JSONs of other seeds (same config)",
                      description="Merge `rag experiment --json` results that differ only in "
                                  "their seeds (e.g. run in parallel) into one, with figures.")
    p.add_argument("results", nargs="+", help="result JSON files of `rag experiment`")
    p.add_argument("--out", default="rag-experiment", help="folder for the figures "
                                                           "(default: %(default)s)")
    add_common_args(p, device=False)
    p.set_defaults(run=run_merge, outputs=(folder("out", recognise=("qa.png",)),))

    p = rs.add_parser("index", help="build a BM25 index of a corpus",
                      description="Index documents with bm25s and save the index folder.")
    p.add_argument("--corpus", required=True, help=CORPUS_HELP)
    p.add_argument("--out", required=True,
                   help="index folder: new, empty or an earlier index (other files in it are "
                        "kept; a folder of anything else needs --overwrite)")
    p.add_argument("--k1", type=float, default=1.5, help="BM25 k1 (default: %(default)s)")
    p.add_argument("--b", type=float, default=0.75, help="BM25 b (default: %(default)s)")
    p.add_argument("--method", default="lucene",
                   choices=("lucene", "robertson", "atire", "bm25l", "bm25+"),
                   help="bm25s variant (default: %(default)s)")
    add_common_args(p, device=False)
    p.set_defaults(run=run_index, outputs=(folder("out"),))

    p = rs.add_parser("train", help="train a causal LM with a retrieval-augmented objective",
                      description="Train on --corpus (targets) with passages retrieved from it "
                                  "(and --retrieval-corpus) placed before each prefix.")
    p.add_argument("--corpus", required=True, help=CORPUS_HELP + " (training targets)")
    p.add_argument("--retrieval-corpus", default=None,
                   help="extra documents that are retrievable but never targets")
    p.add_argument("--model", default="tiny",
                   help="'tiny' (random-init GPT-2, tokenizer trained on the corpus) or a local "
                        "transformers causal-LM folder (default: %(default)s)")
    p.add_argument("--retriever", default="bm25", choices=("bm25", "dense"),
                   help="retriever (default: %(default)s)")
    p.add_argument("--out", default="rag-train", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="resume from out/checkpoint.pt")
    add_config_args(p, RagObjectiveConfig)
    add_config_args(p, TinyLMConfig)
    add_config_args(p, TrainConfig)
    add_common_args(p)
    p.set_defaults(run=run_train, outputs=(folder("out"),))

    p = rs.add_parser("eval", help="perplexity with/without retrieval, cloze QA",
                      description="Evaluate a trained model folder on a corpus (and probes).")
    p.add_argument("--model", required=True, help="trained model folder (e.g. rag-train/model)")
    p.add_argument("--corpus", required=True, help=CORPUS_HELP + " (indexed for retrieval)")
    p.add_argument("--probes", default=None,
                   help="JSONL of cloze probes: {prompt, answer, candidates?} per line")
    p.add_argument("--retriever", default="bm25", choices=("bm25", "dense"),
                   help="retriever (default: %(default)s)")
    p.add_argument("--k", type=int, default=2, help="passages per query (default: %(default)s)")
    p.add_argument("--context-tokens", type=int, default=96,
                   help="token budget of the passages (default: %(default)s)")
    p.add_argument("--max-docs", type=int, default=1000,
                   help="documents scored for perplexity (default: %(default)s)")
    add_common_args(p)
    p.set_defaults(run=run_eval)
