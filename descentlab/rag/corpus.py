"""Documents with ids and entity ids, and the loaders that read them.

A :class:`Corpus` is an ordered list of :class:`Document`; the position of a document is its
*index* (what retrieval returns), its ``id`` is the user's name for it and its ``entity`` says
what it is about (several documents can describe one entity: the paraphrased biographies of
one person). Entity ids drive leave-one-out exclusion at entity granularity (SPEC part E:
"excluding only the target document still retrieves its siblings").

Loaders:
- JSONL, one object per line: ``{"id": ..., "text": ..., "entity": ...}`` (field names
  configurable; ``id`` defaults to ``row-N``, ``entity`` to the id);
- a folder of ``*.txt`` files: the id is the path relative to the folder without suffix, the
  entity is the first sub-folder (files at the top level are their own entity).
Bad input (no documents, empty text, duplicate ids, a malformed row) raises
:class:`~descentlab.core.errors.InputError` naming the file, line and field.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from descentlab.core.errors import InputError


@dataclasses.dataclass(frozen=True)
class Document:
    """One retrievable passage: ``id`` unique in its corpus, ``entity`` what it describes."""

    id: str
    text: str
    entity: str


class Corpus(Sequence[Document]):
    """An immutable, validated list of documents with id and entity look-ups.

    ``entity_codes`` is an int array (n_docs,) with one code per distinct entity, in order of
    first appearance; ``entity_members[c]`` lists the document indices of entity code ``c``.
    """

    def __init__(self, docs: Iterable[Document], where: str = "corpus"):
        self.docs: tuple[Document, ...] = tuple(docs)
        if not self.docs:
            raise InputError("the corpus has no documents", where=where)
        self.index_of: dict[str, int] = {}
        codes: dict[str, int] = {}
        entity_codes = np.empty(len(self.docs), dtype=np.int64)
        for i, d in enumerate(self.docs):
            if not isinstance(d.text, str) or not d.text.strip():
                raise InputError("document has no text", where=f"{where}: document {d.id!r}")
            if d.id in self.index_of:
                raise InputError(f"duplicate document id {d.id!r}", where=where)
            self.index_of[d.id] = i
            entity_codes[i] = codes.setdefault(d.entity, len(codes))
        self.entity_codes = entity_codes
        self.entity_names: tuple[str, ...] = tuple(codes)
        members: list[list[int]] = [[] for _ in codes]
        for i, c in enumerate(entity_codes):
            members[c].append(i)
        self.entity_members: tuple[np.ndarray, ...] = tuple(np.asarray(m) for m in members)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i):  # type: ignore[override]
        return self.docs[i]

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.docs]

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.docs]

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the documents in order (id, entity, text): equal iff the corpora
        are; a saved index records it so that reuse against another corpus is caught."""
        if self._fingerprint is None:
            import hashlib
            import json

            h = hashlib.sha256()
            for d in self.docs:
                h.update(json.dumps([d.id, d.entity, d.text]).encode("utf-8"))
                h.update(b"\n")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def max_docs_per_entity(self) -> int:
        """Largest number of documents any one entity has (bounds entity exclusion)."""
        return max(len(m) for m in self.entity_members)

    def docs_of(self, entity: str) -> list[int]:
        """Indices of every document about ``entity`` (empty if unknown)."""
        code = self.entity_names.index(entity) if entity in self.entity_names else None
        return [] if code is None else self.entity_members[code].tolist()

    def subset(self, indices: Iterable[int]) -> Corpus:
        """A new corpus of the documents at ``indices`` (in that order)."""
        return Corpus([self.docs[int(i)] for i in indices])

    def extended(self, extra: Iterable[Document]) -> Corpus:
        """This corpus followed by ``extra`` documents (ids must stay unique)."""
        return Corpus([*self.docs, *extra])

    def replaced(self, new_docs: dict[str, Document]) -> Corpus:
        """A copy with documents swapped by id (counterfactual edits keep positions)."""
        return Corpus([new_docs.get(d.id, d) for d in self.docs])

    def to_jsonl(self, path: str | os.PathLike) -> Path:
        """Write ``{"id", "text", "entity"}`` per line, atomically."""
        import json

        from descentlab.core.io import atomic_write

        path = Path(path)
        with atomic_write(path, "w") as f:
            for d in self.docs:
                f.write(json.dumps(dataclasses.asdict(d)) + "\n")
        return path


def load_jsonl(path: str | os.PathLike, *, text_field: str = "text", id_field: str = "id",
               entity_field: str = "entity") -> Corpus:
    """Read a corpus from JSONL (one document object per line).

    ``text_field`` is required and must be a non-empty string; ``id_field`` defaults to
    ``row-<line>``; ``entity_field`` defaults to the id (each document its own entity).
    """
    from descentlab.core.io import read_jsonl

    docs = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        text = obj.get(text_field)
        if text is None:
            raise InputError(f"missing field {text_field!r}", where=where)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"field {text_field!r} must be non-empty text", where=where)
        doc_id = str(obj.get(id_field, f"row-{lineno}"))
        if doc_id in seen:
            raise InputError(f"duplicate {id_field!r} {doc_id!r} (first on line {seen[doc_id]})",
                             where=where)
        seen[doc_id] = lineno
        entity = obj.get(entity_field, doc_id)
        docs.append(Document(doc_id, text, str(entity)))
    if not docs:
        raise InputError("the corpus has no documents", where=path)
    return Corpus(docs, where=str(path))


def load_text_folder(path: str | os.PathLike, *, pattern: str = "*.txt") -> Corpus:
    """Read every ``pattern`` file under ``path`` (recursively, sorted) as one document.

    id: the relative path without suffix; entity: its first sub-folder, else the id.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError("corpus folder not found", where=root)
    docs = []
    for f in sorted(root.rglob(pattern)):
        if not f.is_file():
            continue
        rel = f.relative_to(root)
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text ({e.reason})", where=f) from None
        except OSError as e:
            raise InputError(f"cannot read the file: {(e.strerror or type(e).__name__).lower()}",
                             where=f) from None
        if not text.strip():
            raise InputError("document has no text", where=f)
        doc_id = rel.with_suffix("").as_posix()
        entity = rel.parts[0] if len(rel.parts) > 1 else doc_id
        docs.append(Document(doc_id, text.strip(), entity))
    if not docs:
        raise InputError(f"no {pattern} files: the corpus has no documents", where=root)
    return Corpus(docs, where=str(root))


# How a path is read: a folder of text files or a JSONL file.
LOADERS = {
    "folder": load_text_folder,
    "jsonl": load_jsonl,
}


def load_corpus(path: str | os.PathLike, **kwargs) -> Corpus:
    """Load a folder (``load_text_folder``) or a JSONL file (``load_jsonl``)."""
    p = Path(path)
    kind = "folder" if p.is_dir() else "jsonl"
    if kind == "folder":
        kwargs = {k: v for k, v in kwargs.items() if k == "pattern"}
    else:
        kwargs = {k: v for k, v in kwargs.items() if k != "pattern"}
    return LOADERS[kind](p, **kwargs)
