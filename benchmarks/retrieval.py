"""Batched BM25 retrieval throughput on 20,000 synthetic biography documents.

Measures, in one run and on the same queries (cloze probes, which name a person):
- ``qps``: descentlab's batched search (one sparse product per block of queries + exact
  masking + argpartition), with no exclusion;
- ``qps_exclude_entity``: the same with every document of the query's entity excluded;
- ``qps_bm25s``: bm25s' own ``BM25.retrieve`` on the same index (one thread), the
  reference, and the ratio between the two. Also checks that both return the same top-k
  scores and that no excluded document is ever returned. Each timing is the best of
  ``--repeats`` runs (the machine may be shared).

Target: ``qps`` >= 1000 on a CPU. Usage:
    python benchmarks/retrieval.py --json /tmp/retrieval.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from descentlab.core.io import write_json
from descentlab.rag.retrieval import BM25Index, bm25_tokenize, exclusion
from descentlab.rag.synthetic import make_biographies, make_probes


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20000, help="number of documents (default 20000)")
    ap.add_argument("--queries", type=int, default=5000, help="number of queries (default 5000)")
    ap.add_argument("--reference-queries", type=int, default=1000,
                    help="queries timed through bm25s.retrieve (default 1000)")
    ap.add_argument("--k", type=int, default=10, help="top-k (default 10)")
    ap.add_argument("--batch-size", type=int, default=256, help="queries per block (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", default=None, help="write results to PATH")
    args = ap.parse_args(argv)

    docs_per_person = 4
    bios = make_biographies(-(-args.docs // docs_per_person), docs_per_person, seed=args.seed)
    corpus = bios.corpus().subset(range(args.docs))
    t0 = time.perf_counter()
    index = BM25Index(corpus)
    index_s = time.perf_counter() - t0
    probes = make_probes(bios.people, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(probes), size=min(args.queries, len(probes)), replace=False)
    queries = [probes[i].prompt for i in pick]
    own_doc = np.array([corpus.index_of[f"{probes[i].entity}-d0"] for i in pick])
    excl = exclusion(corpus, own_doc, "entity")

    res = index.search(queries, args.k, batch_size=args.batch_size)  # warm-up
    t_plain = _best(lambda: index.search(queries, args.k, batch_size=args.batch_size),
                    args.repeats)
    res_ex = index.search(queries, args.k, exclude=excl, batch_size=args.batch_size)
    t_excl = _best(lambda: index.search(queries, args.k, exclude=excl,
                                        batch_size=args.batch_size), args.repeats)
    leaked = int(sum(np.isin(res_ex.indices[i], excl[i][excl[i] >= 0]).any()
                     for i in range(len(queries))))

    nref = min(args.reference_queries, len(queries))
    ref_tokens = [bm25_tokenize(q, index.stopwords) for q in queries[:nref]]
    _, ref_scores = index.bm25.retrieve(ref_tokens, k=args.k, show_progress=False, n_threads=1)
    t_ref = _best(lambda: index.bm25.retrieve(ref_tokens, k=args.k, show_progress=False,
                                              n_threads=1), args.repeats)
    score_gap = float(np.abs(np.sort(ref_scores, 1) - np.sort(res.scores[:nref], 1)).max())

    out = {
        "docs": len(corpus),
        "queries": len(queries),
        "k": args.k,
        "index_seconds": round(index_s, 3),
        "qps": len(queries) / t_plain,
        "qps_exclude_entity": len(queries) / t_excl,
        "qps_bm25s": nref / t_ref,
        "speedup_vs_bm25s": (len(queries) / t_plain) / (nref / t_ref),
        "max_score_gap_vs_bm25s": score_gap,
        "excluded_docs_returned": leaked,
        "target_qps": 1000,
    }
    for key, val in out.items():
        print(f"{key:>24}: {val:.4g}" if isinstance(val, float) else f"{key:>24}: {val}")
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
