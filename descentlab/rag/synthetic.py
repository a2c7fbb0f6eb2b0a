"""Seeded synthetic biographies: paraphrased documents, cloze probes, counterfactual edits.

Follows the bioS set-up of Allen-Zhu & Li, "Physics of Language Models: Part 3.1" (2023):
N people, each with attributes (birth date, birth city, university, major, employer); several
documents per person, each rendering every attribute with a randomly chosen paraphrase
template, the full name in every sentence and the sentence order shuffled (the paper's
"multi + permute + fullname" augmentation, without which extraction stays near 0%).

QA is posed as a cloze probe (SPEC part E): for every person and attribute one template
(among those that end with the value) is *held out* of that person's documents; its prefix up
to the value (``"Ada Byron is a native of"``) is the probe and the value the answer, scored by
exact match of the greedy continuation. The template itself appears in other people's
documents, so a model can learn its phrasing but has never read this fact in it: a correct
answer needs the fact, not a verbatim continuation (the QA-on-held-out-format set-up of
Allen-Zhu & Li).

A counterfactual edit changes one attribute of a person to another value from the pool and
re-renders that person's documents with the same templates and order, so the edited
document differs from the original only in the value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from descentlab.core.errors import InputError
from descentlab.rag.corpus import Corpus, Document

FIRST_NAMES = (
    "Ada Alan Alice Amara Anton Aria Arjun Astrid Basil Beatrix Bruno Camila Carlos Cecil "
    "Clara Dario Delia Dmitri Edith Elena Elias Emil Esme Farah Felix Flora Gideon Greta Hana "
    "Hector Helga Hugo Ines Ivan Jonah Jules Kaito Karin Kofi Lars Leila Linus Lucia Magnus "
    "Maren Mateo Mina Nadia Nils Noor Olga Omar Oscar Pablo Petra Quinn Rafael Rosa Ruben "
    "Sabine Samir Selma Soren Tamar Theo Tilda Ugo Uma Vera Viktor Wanda Wendel Xavier Yara "
    "Yusuf Zara Zeno Anika Boris Chiara Dorian Elif Fabian Gemma Hassan Irene Jasper Kiran "
    "Lena Milo Nora Otto Priya Rohan Sofia Tobias Ulla Vikram Willa Yvette Zoltan"
).split()
LAST_NAMES = (
    "Abbott Alvarez Andersen Baker Barros Becker Bianchi Brandt Castillo Chen Costa Dahl "
    "Dubois Eriksen Esposito Fischer Fontaine Garcia Gomez Hahn Hansen Horvat Ibrahim Ivanova "
    "Jansen Jensen Kaplan Keller Kowalski Kruger Larsen Laurent Lindqvist Lopez Marino Meyer "
    "Moreau Nakamura Novak Nunes Okafor Olsen Ortega Park Patel Perez Quint Rossi Russo Sato "
    "Schmidt Silva Sorensen Suzuki Tanaka Torres Ueda Umar Vargas Vogel Wagner Weber Yilmaz "
    "Young Zimmer Zhou Adler Bauer Conti Duarte Engel Ferrari Gallo Holm Ito Jovanovic Kim "
    "Lange Moretti Nielsen Oliveira Pellegrini Reyes Ramos Santos Takahashi Vidal Wolff "
    "Yamamoto Ziegler Berg Cruz Falk Haas Kuhn Lund"
).split()

CITIES = tuple((
    "Amsterdam Athens Bangkok Barcelona Berlin Bogota Boston Brisbane Cairo Chicago Dakar "
    "Denver Dublin Geneva Hamburg Havana Helsinki Istanbul Jakarta Kyoto Lagos Lima Lisbon "
    "London Madrid Manila Melbourne Montreal Mumbai Munich Nairobi Oslo Paris Prague Quito "
    "Seattle Seoul Stockholm Sydney Toronto Valencia Vienna Warsaw Zurich"
).split())
UNIVERSITIES = (
    "Harvard University", "Yale University", "Stanford University", "Oxford University",
    "Cambridge University", "Princeton University", "Columbia University", "Cornell University",
    "Duke University", "Rice University", "Brown University", "Tufts University",
    "McGill University", "Kyoto University", "Seoul National University", "ETH Zurich",
    "Sorbonne University", "Leiden University", "Uppsala University", "Heidelberg University",
    "Bologna University", "Monash University", "Peking University", "Tsinghua University",
    "Purdue University", "Emory University", "Vanderbilt University", "Boston University",
    "New York University", "Georgetown University",
)
MAJORS = tuple((
    "Physics|Chemistry|Biology|Mathematics|Economics|History|Philosophy|Linguistics|"
    "Architecture|Astronomy|Geology|Sociology|Psychology|Statistics|Music|Literature|"
    "Anthropology|Neuroscience|Ecology|Oceanography|Law|Medicine|Nursing|Accounting|Finance|"
    "Marketing|Journalism|Theology|Geography|Robotics"
).split("|"))
EMPLOYERS = (
    "Google", "Microsoft", "Amazon", "Siemens", "Toyota", "Nestle", "Unilever", "Samsung",
    "Boeing", "Airbus", "Pfizer", "Novartis", "Intel", "Nvidia", "Spotify", "Netflix", "Shell",
    "Volvo", "Ikea", "Lego", "Philips", "Nokia", "Ericsson", "Sony", "Honda", "Adidas", "Puma",
    "Heineken", "Danone", "Oracle", "Salesforce", "Adobe", "Cisco", "Deloitte", "Accenture",
    "Reuters", "Bayer", "Roche", "Ferrari", "Porsche",
)
MONTHS = ("January February March April May June July August September October November "
          "December").split()


def _dates() -> tuple[str, ...]:
    return tuple(f"{m} {d}, {y}" for y in range(1950, 2000) for m in MONTHS for d in range(1, 29))


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One biography field: its value pool and paraphrase templates.

    Templates that end with ``{value}.`` can serve as cloze probes (:attr:`probe_templates`).
    """

    name: str
    values: tuple[str, ...]
    templates: tuple[str, ...]

    @property
    def probe_templates(self) -> tuple[int, ...]:
        """Indices of the templates whose text ends with the value (usable as probes)."""
        return tuple(i for i, t in enumerate(self.templates) if t.endswith("{value}."))


# Registry of biography attributes (order = canonical attribute order).
ATTRIBUTES: dict[str, Attribute] = {a.name: a for a in (
    Attribute("birth_date", _dates(), (
        "{name} was born on {value}.",
        "{name} came into this world on {value}.",
        "{name}'s birthday is {value}.",
        "{name} celebrated the first day of life on {value}.",
    )),
    Attribute("birth_city", CITIES, (
        "{name} is a native of {value}.",
        "{name} grew up in {value}.",
        "{name}'s hometown is {value}.",
        "{name} spent childhood years in {value}.",
    )),
    Attribute("university", UNIVERSITIES, (
        "{name} graduated from {value}.",
        "{name} studied at {value}.",
        "{name} received an education at {value}.",
        "{name} is an alumnus of {value}.",
    )),
    Attribute("major", MAJORS, (
        "{name} majored in {value}.",
        "{name} earned a degree in {value}.",
        "{name} focused on {value} in college.",
        "{name} specialised in {value}.",
    )),
    Attribute("employer", EMPLOYERS, (
        "{name} works for {value}.",
        "{name} is employed by {value}.",
        "{name} has a job at {value}.",
        "{name} earns a living at {value}.",
    )),
)}


@dataclasses.dataclass(frozen=True)
class Person:
    """An entity of the synthetic world: id (``p042``), full name, one value per attribute,
    and per attribute the template index held out of this person's documents (the probe)."""

    id: str
    name: str
    facts: dict[str, str]
    probe_template: dict[str, int]


@dataclasses.dataclass(frozen=True)
class DocPlan:
    """How one document renders its person: ``(attribute, template index)`` in sentence order."""

    doc_id: str
    person: str
    sentences: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class Probe:
    """A cloze question: ``prompt`` (no trailing space), gold ``answer``, ranked ``candidates``.

    For counterfactual probes ``answer`` is the edited value (what the document says) and
    ``original`` the value the model saw in training (its memory); otherwise ``original`` is
    the answer too.
    """

    entity: str
    attribute: str
    prompt: str
    answer: str
    original: str
    candidates: tuple[str, ...]
    end: str = "."  # what follows the value in the text (scored with it: EM needs it too)


def render(person: Person, plan: DocPlan, facts: dict[str, str] | None = None) -> str:
    """Text of ``plan`` for ``person`` (``facts`` overrides values, e.g. a counterfactual)."""
    facts = {**person.facts, **(facts or {})}
    return " ".join(ATTRIBUTES[a].templates[t].format(name=person.name, value=facts[a])
                    for a, t in plan.sentences)


@dataclasses.dataclass
class Biographies:
    """A synthetic world: people, document plans, and the corpus they render to."""

    people: list[Person]
    plans: list[DocPlan]
    seed: int

    @property
    def person(self) -> dict[str, Person]:
        return {p.id: p for p in self.people}

    def corpus(self, people: set[str] | None = None,
               edits: dict[str, dict[str, str]] | None = None) -> Corpus:
        """Documents of ``people`` (all by default) with optional per-person fact ``edits``."""
        by_id = self.person
        edits = edits or {}
        return Corpus(Document(pl.doc_id, render(by_id[pl.person], pl, edits.get(pl.person)),
                               pl.person)
                      for pl in self.plans if people is None or pl.person in people)


def make_biographies(n_people: int, docs_per_person: int = 3, seed: int = 0,
                     attributes: tuple[str, ...] | None = None) -> Biographies:
    """Sample ``n_people`` people (unique full names) and ``docs_per_person`` documents each.

    Per person and attribute one probe template is held out; each document picks, per
    attribute, one of the other templates uniformly at random and shuffles the sentence
    order. Deterministic in ``seed``.
    """
    attributes = tuple(attributes or ATTRIBUTES)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise InputError(f"unknown attribute(s) {unknown}; choose from {list(ATTRIBUTES)}")
    max_people = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 1 <= n_people <= max_people:
        raise InputError(f"n_people must be in 1..{max_people}, got {n_people}")
    if docs_per_person < 1:
        raise InputError(f"docs_per_person must be >= 1, got {docs_per_person}")
    rng = np.random.default_rng(seed)
    name_codes = rng.choice(max_people, size=n_people, replace=False)
    people, plans = [], []
    width = len(str(n_people - 1))
    for k, code in enumerate(name_codes):
        name = f"{FIRST_NAMES[code // len(LAST_NAMES)]} {LAST_NAMES[code % len(LAST_NAMES)]}"
        facts = {a: ATTRIBUTES[a].values[rng.integers(len(ATTRIBUTES[a].values))]
                 for a in attributes}
        held = {a: int(rng.choice(ATTRIBUTES[a].probe_templates)) for a in attributes}
        pid = f"p{k:0{width}d}"
        people.append(Person(pid, name, facts, held))
        allowed = {a: [t for t in range(len(ATTRIBUTES[a].templates)) if t != held[a]]
                   for a in attributes}
        for j in range(docs_per_person):
            order = rng.permutation(len(attributes))
            sentences = tuple((attributes[o], int(rng.choice(allowed[attributes[o]])))
                              for o in order)
            plans.append(DocPlan(f"{pid}-d{j}", pid, sentences))
    return Biographies(people, plans, seed)


def _candidates(attr: Attribute, gold: tuple[str, ...], n: int, rng) -> tuple[str, ...]:
    """``gold`` values plus random distractors from the pool, ``n`` in all, shuffled."""
    out = list(dict.fromkeys(gold))
    while len(out) < min(n, len(attr.values)):
        v = attr.values[rng.integers(len(attr.values))]
        if v not in out:
            out.append(v)
    rng.shuffle(out)
    return tuple(out)


def probe_prompt(person: Person, attribute: str) -> str:
    """The person's held-out template up to the value, e.g. ``"Ada Byron is a native of"``."""
    tpl = ATTRIBUTES[attribute].templates[person.probe_template[attribute]]
    return tpl[: tpl.index("{value}")].format(name=person.name).rstrip()


def make_probes(people: list[Person], *, n_candidates: int = 5, seed: int = 0) -> list[Probe]:
    """One cloze probe per (person, attribute), with ``n_candidates`` answer candidates."""
    rng = np.random.default_rng(seed)
    out = []
    for p in people:
        for a, v in p.facts.items():
            cands = _candidates(ATTRIBUTES[a], (v,), n_candidates, rng)
            out.append(Probe(p.id, a, probe_prompt(p, a), v, v, cands))
    return out


def make_counterfactuals(people: list[Person], *, seed: int = 0, n_candidates: int = 5,
                         ) -> tuple[dict[str, dict[str, str]], list[Probe]]:
    """Edit one random attribute per person to a different value from its pool.

    Returns ``(edits, probes)``: ``edits[person_id] = {attribute: new_value}`` (feed to
    :meth:`Biographies.corpus`) and one probe per edit whose ``answer`` is the new value and
    ``original`` the old one (both among the candidates).
    """
    rng = np.random.default_rng(seed)
    edits: dict[str, dict[str, str]] = {}
    probes = []
    for p in people:
        names = list(p.facts)
        a = names[rng.integers(len(names))]
        pool = ATTRIBUTES[a].values
        new = p.facts[a]
        while new == p.facts[a]:
            new = pool[rng.integers(len(pool))]
        edits[p.id] = {a: new}
        cands = _candidates(ATTRIBUTES[a], (new, p.facts[a]), n_candidates, rng)
        probes.append(Probe(p.id, a, probe_prompt(p, a), new, p.facts[a], cands))
    return edits, probes
