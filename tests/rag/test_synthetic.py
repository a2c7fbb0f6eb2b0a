"""Synthetic biographies: determinism, held-out probe templates, counterfactual edits."""

import re

from descentlab.rag.synthetic import (
    ATTRIBUTES,
    FIRST_NAMES,
    LAST_NAMES,
    make_biographies,
    make_counterfactuals,
    make_probes,
)


def test_name_pools_have_no_duplicates():
    assert len(set(FIRST_NAMES)) == len(FIRST_NAMES)
    assert len(set(LAST_NAMES)) == len(LAST_NAMES)


def test_deterministic_and_unique_names():
    a, b = make_biographies(50, 3, seed=4), make_biographies(50, 3, seed=4)
    assert a.corpus().texts == b.corpus().texts
    assert make_biographies(50, 3, seed=5).corpus().texts != a.corpus().texts
    assert len({p.name for p in a.people}) == 50
    c = a.corpus()
    assert len(c) == 150 and c.max_docs_per_entity == 3


def test_every_document_states_every_fact_with_full_name():
    bios = make_biographies(20, 3, seed=1)
    by = bios.person
    for d in bios.corpus():
        p = by[d.entity]
        sentences = [s for s in re.split(r"(?<=\.) ", d.text)]
        assert len(sentences) == len(ATTRIBUTES)
        assert all(p.name in s for s in sentences)
        for v in p.facts.values():
            assert v in d.text


def test_probe_template_is_held_out_of_the_persons_documents():
    bios = make_biographies(30, 4, seed=2)
    c = bios.corpus()
    probes = make_probes(bios.people, n_candidates=5)
    assert len(probes) == 30 * len(ATTRIBUTES)
    seen_elsewhere = 0
    for pr in probes:
        own = [d.text for d in c if d.entity == pr.entity]
        assert all(pr.prompt not in t for t in own)  # never the person's own phrasing
        assert pr.answer in pr.candidates and len(set(pr.candidates)) == 5
        phrase = pr.prompt.split(bios.person[pr.entity].name, 1)[1]
        seen_elsewhere += any(phrase + " " in d.text for d in c if d.entity != pr.entity)
    assert seen_elsewhere == len(probes)  # the template itself is learnable from others


def test_counterfactual_changes_only_the_value():
    bios = make_biographies(10, 2, seed=3)
    edits, probes = make_counterfactuals(bios.people, seed=0)
    orig, edited = bios.corpus(), bios.corpus(edits=edits)
    for pr in probes:
        assert pr.answer != pr.original
        assert {pr.answer, pr.original} <= set(pr.candidates)
        assert bios.person[pr.entity].facts[pr.attribute] == pr.original
    for d0, d1 in zip(orig, edited):
        (attr, new), = edits[d0.entity].items()
        old = bios.person[d0.entity].facts[attr]
        assert d1.text == d0.text.replace(old, new)
