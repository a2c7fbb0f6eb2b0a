"""Retrieval-augmented LM training (SPEC part E); ``__init__`` is the public API (lazy, PEP 562).

    from descentlab.rag import BM25Index, Corpus, Document, train, evaluate, run_experiment
    index = BM25Index(corpus)                      # or BM25Index.load("idx/"); .save(path)
    hits = index.hits(["Ada Byron was born on"], k=3, exclude_entities=[["ada-byron"]])
    run = train(corpus, index=index)               # RagTrainResult: model, tokenizer, history
    ev = evaluate(run.model, tokenizer=run.tokenizer, index=index, probes=probes)
    result = run_experiment(preset="tiny")         # the grounding experiment (every arm)

Modules: corpus (documents, loaders), retrieval (BM25, exclusion), dense (embeddings),
objective (the variants, training examples), scoring (perplexity, cloze QA, counterfactuals),
api (train / evaluate / search), experiment (the grounding experiment, presets), synthetic
(the biography world), viz (figures).
"""

from descentlab.core.lazy import lazy_exports

# name -> module: imported on first use, so `import descentlab.rag` stays cheap.
_EXPORTS = {
    "Corpus": "corpus", "Document": "corpus", "load_corpus": "corpus",
    "BM25Index": "retrieval", "DenseIndex": "dense", "Hit": "retrieval",
    "RETRIEVERS": "retrieval", "EXCLUSIONS": "retrieval", "BM25_METHODS": "retrieval",
    "VARIANTS": "objective", "RagObjectiveConfig": "objective",
    "load_probes": "scoring",
    "train": "api", "evaluate": "api", "search": "api", "load_queries": "api", "Query": "api",
    "RagTrainResult": "api", "RagEvalConfig": "api", "RagEvalResult": "api",
    "run_experiment": "experiment", "merge_results": "experiment", "preset_configs": "experiment",
    "PRESETS": "experiment", "ARMS": "experiment", "RagExperimentConfig": "experiment",
    "make_biographies": "synthetic", "make_probes": "synthetic", "Probe": "synthetic",
    "plot_experiment": "viz",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
