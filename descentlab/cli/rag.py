"""``descentlab rag``: retrieval-augmented LM training (SPEC part E).

Subcommands: ``experiment`` (the grounding experiment at a preset size), ``merge``
(experiment results of other seeds), ``index`` (a BM25 index of a corpus), ``search`` (query a
saved index), ``train`` (a model on a corpus with one objective variant) and ``eval``
(perplexity with/without retrieval, cloze QA from a probes file). Parsing and printing only:
the work is :mod:`descentlab.rag`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from descentlab.cli.options import add_config_args, config_from_args
from descentlab.core.errors import InputError
from descentlab.core.outputs import folder
from descentlab.core.table import format_table
from descentlab.core.training import TrainConfig
from descentlab.lm.tiny import TinyLMConfig
from descentlab.rag.api import RagEvalConfig
from descentlab.rag.experiment import PRESETS, REQUIRED_FIELDS, RagExperimentConfig
from descentlab.rag.objective import RagObjectiveConfig
from descentlab.rag.retrieval import BM25_METHODS, RETRIEVERS

CORPUS_HELP = "documents: a JSONL file ({id, text, entity} per line) or a folder of .txt files"
INDEX_HELP = "a saved index folder (`rag index --out`); its corpus fingerprint is checked"


def _configs(args: argparse.Namespace, preset: str | None):
    from descentlab.rag.experiment import preset_configs

    base = preset_configs(preset)
    exp, model, train, obj = (config_from_args(type(b), args, base=b) for b in base)
    if getattr(args, "seeds", None) is None and args.seed != 0:
        exp = dataclasses.replace(exp, seeds=(args.seed,))
    return exp, model, train, obj


def experiment_table(result: dict) -> str:
    from descentlab.rag.viz import ordered_arms

    cols = ["arm", *REQUIRED_FIELDS, "qa_em_train_closed_book", "qa_em_train_distractor"]
    rows = []
    for arm in ordered_arms(result):
        v = result["variants"][arm]
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
                            preset=args.preset, log=lambda line: print(line, flush=True))
    result["figures"] = [str(p) for p in plot_experiment(result, out)]
    print(experiment_table(result))
    r = result["retrieval"]
    print(f"\nretrieval recall@{obj.k}={r['recall_at_k']:.3f}  recall@1={r['recall_at_1']:.3f}; "
          f"{result['seconds']:.0f}s; figures under {out}/")
    return result


def run_merge(args: argparse.Namespace) -> dict:
    from descentlab.core.io import read_json
    from descentlab.core.seeding import resolve_device
    from descentlab.rag.experiment import merge_results
    from descentlab.rag.viz import plot_experiment

    resolve_device(args.device)  # nothing to run on it, but a bad value is still an error
    result = merge_results([read_json(p) for p in args.results], names=list(args.results))
    result["figures"] = [str(p) for p in plot_experiment(result, args.out)]
    print(experiment_table(result))
    return result


def run_index(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device
    from descentlab.rag.corpus import load_corpus
    from descentlab.rag.retrieval import BM25Index

    resolve_device(args.device)  # BM25 runs on the CPU; the flag is checked like elsewhere
    corpus = load_corpus(args.corpus)
    index = BM25Index(corpus, k1=args.k1, b=args.b, method=args.method)
    path = index.save(args.out, overwrite=args.overwrite)
    result = {"docs": len(corpus), "entities": len(corpus.entity_names),
              "vocab": len(index.vocab), "index": str(path),
              "fingerprint": index.fingerprint}
    print(format_table([{k: v for k, v in result.items() if k != "fingerprint"}]))
    return result


def _snippet(text: str, width: int = 72) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def run_search(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device
    from descentlab.rag.api import Query, load_queries, search
    from descentlab.rag.retrieval import BM25Index

    resolve_device(args.device)
    ex_docs = tuple(args.exclude_docs or ())
    ex_ents = tuple(args.exclude_entities or ())
    queries = [Query(q, ex_docs, ex_ents) for q in args.query or ()]
    if args.queries:
        queries += [dataclasses.replace(q, exclude_docs=q.exclude_docs + ex_docs,
                                        exclude_entities=q.exclude_entities + ex_ents)
                    for q in load_queries(args.queries)]
    if not queries:
        raise InputError("give a query (or a file of queries)", where="query")
    index = BM25Index.load(args.index)
    hits = search(index, queries, args.k)
    rows = [{"query": n + 1, "rank": h.rank, "id": h.id, "entity": h.entity,
             "score": round(h.score, 3), "snippet": _snippet(h.text)}
            for n, hs in enumerate(hits) for h in hs]
    print(format_table(rows, ["query", "rank", "id", "entity", "score", "snippet"]))
    return {"index": str(args.index), "k": args.k, "queries": [
        {"query": q.text, "exclude_doc": list(q.exclude_docs),
         "exclude_entity": list(q.exclude_entities),
         "hits": [{"rank": h.rank, "id": h.id, "entity": h.entity, "score": h.score,
                   "text": h.text} for h in hs]} for q, hs in zip(queries, hits)]}


def run_train(args: argparse.Namespace) -> dict:
    from descentlab.rag import api
    from descentlab.rag.viz import plot_training

    if args.corpus is None and args.index is None:
        raise InputError("give the training documents (or an index of them)", where="corpus")
    index = api.as_index(args.index) if args.index else None
    corpus = args.corpus if args.corpus is not None else index.corpus
    obj = config_from_args(RagObjectiveConfig, args)
    tiny = config_from_args(TinyLMConfig, args) if args.model == "tiny" else None
    out = Path(args.out)
    res = api.train(corpus, model=args.model, objective=obj,
                    train_config=config_from_args(TrainConfig, args), tiny=tiny, index=index,
                    retriever=args.retriever, retrieval_corpus=args.retrieval_corpus,
                    out_dir=out, resume=args.resume, device=args.device, seed=args.seed)
    model_dir = res.save(out / "model")
    fig = plot_training(res.history, out / "loss.png",
                        title=f"rag train: {obj.variant}, k={obj.k} ({res.steps} steps)")
    result = {**res.summary(), "model": str(model_dir), "figure": str(fig),
              "index": args.index, "retriever": "bm25" if index is not None else args.retriever}
    print(format_table([{k: v for k, v in result.items() if k != "figure"}]))
    print(f"training figure: {fig}")
    return result


def run_eval(args: argparse.Namespace) -> dict:
    from descentlab.rag import api

    if args.corpus is None and args.index is None:
        raise InputError("give the documents to evaluate on (or an index of them)",
                         where="corpus")
    res = api.evaluate(args.model, args.corpus, args.probes, index=args.index,
                       config=config_from_args(RagEvalConfig, args), device=args.device,
                       seed=args.seed)
    result = res.summary()
    print(format_table([{k: v for k, v in result.items() if k != "settings"}]))
    s = result["settings"]
    print(f"k={s['k']} context_tokens={s['context_tokens']} retriever={s['retriever']} "
          f"index={s['index']} model={s['model']}")
    return result


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """The tiny preset (every arm, one seed): for ``descentlab demo``."""
    from descentlab.rag.experiment import preset_configs, run_experiment
    from descentlab.rag.viz import plot_experiment

    exp, model, train, obj = preset_configs(
        "tiny", experiment={"seeds": (getattr(args, "seed", 0),)})
    result = run_experiment(exp, model, train, obj, out_dir,
                            device=getattr(args, "device", "cpu"), preset="tiny")
    plot_experiment(result, out_dir)
    v = result["variants"]
    result["summary"] = {
        "arms": len(v),
        "closed_book_qa_em_retrieval_only": v["closed_book"]["qa_em_retrieval_only"],
        "full_qa_em_retrieval_only": v["full"]["qa_em_retrieval_only"],
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
                                  "or Wikipedia lead summaries (--world) and measure whether "
                                  "it follows the retrieved documents.")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny",
                   help=f"sizes: {', '.join(PRESETS)} (docs/experiments/rag.md; "
                        "default: %(default)s); flags below override it")
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
    add_common_args(p)
    p.set_defaults(run=run_merge, outputs=(folder("out", recognise=("qa.png",)),))

    p = rs.add_parser("index", help="build a BM25 index of a corpus",
                      description="Index documents with bm25s and save the index folder "
                                  "(reused by `rag search`, `rag train --index`, "
                                  "`rag eval --index`).")
    p.add_argument("--corpus", required=True, help=CORPUS_HELP)
    p.add_argument("--out", required=True,
                   help="index folder: new, empty or an earlier index (other files in it are "
                        "kept; a folder of anything else needs --overwrite)")
    p.add_argument("--k1", type=float, default=1.5, help="BM25 k1 (default: %(default)s)")
    p.add_argument("--b", type=float, default=0.75, help="BM25 b (default: %(default)s)")
    p.add_argument("--method", default="lucene", choices=BM25_METHODS,
                   help="bm25s variant (default: %(default)s)")
    add_common_args(p)
    p.set_defaults(run=run_index, outputs=(folder("out"),))

    p = rs.add_parser("search", help="query a saved index: ranked ids, scores and snippets",
                      description="Search a saved BM25 index (exact exclusion by document or "
                                  "entity id).")
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--query", action="append", metavar="TEXT",
                   help="query text (repeat for several)")
    p.add_argument("--queries", metavar="FILE",
                   help="more queries: one per line, or JSONL {query, exclude_doc?, "
                        "exclude_entity?} per line (.jsonl)")
    p.add_argument("--k", type=int, default=5, help="hits per query (default: %(default)s)")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--exclude-doc", dest="exclude_docs", action="append", metavar="ID",
                    help="never return this document id (repeatable; every query)")
    ex.add_argument("--exclude-entity", dest="exclude_entities", action="append", metavar="ID",
                    help="never return a document of this entity (repeatable; every query)")
    add_common_args(p)
    p.set_defaults(run=run_search)

    p = rs.add_parser("train", help="train a causal LM with a retrieval-augmented objective",
                      description="Train on --corpus (targets) with passages retrieved from it "
                                  "(and --retrieval-corpus) placed before each prefix.")
    p.add_argument("--corpus", default=None,
                   help=CORPUS_HELP + " (training targets; default: the --index documents)")
    p.add_argument("--retrieval-corpus", default=None,
                   help="extra documents that are retrievable but never targets")
    p.add_argument("--index", default=None,
                   help=INDEX_HELP + " against --corpus (+ --retrieval-corpus)")
    p.add_argument("--model", default="tiny",
                   help="'tiny' (random-init GPT-2, tokenizer trained on the corpus) or a local "
                        "transformers causal-LM folder (default: %(default)s)")
    p.add_argument("--retriever", default="bm25", choices=list(RETRIEVERS),
                   help="retriever when no --index is given (default: %(default)s)")
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
    p.add_argument("--corpus", default=None,
                   help=CORPUS_HELP + " (indexed for retrieval; default: the --index documents)")
    p.add_argument("--index", default=None, help=INDEX_HELP + " against --corpus")
    p.add_argument("--probes", default=None,
                   help="JSONL of cloze probes: {prompt, answer, candidates?} per line")
    add_config_args(p, RagEvalConfig)
    add_common_args(p)
    p.set_defaults(run=run_eval)
