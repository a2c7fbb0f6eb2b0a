"""Output locations: checked before any work starts, never clobbered, removed on failure.

The one rule for everything a command writes:

- **Checked first.** Every output location is checked before the work starts: its nearest
  existing ancestor is a folder we can write in (a path under a regular file or in a
  read-only folder fails), and it is of the right kind (a folder where a folder is expected,
  a file where a file is). A failure raises :class:`~descentlab.core.errors.InputError`
  naming the path, so nothing runs for minutes only to fail at the end.
- **Nothing of the user's is clobbered.** An output *folder* may be new, empty, or an
  earlier output of ours (it holds :data:`MARKER`, or one of the names a command
  recognises, e.g. ``checkpoint.pt``); a non-empty folder of anything else is refused unless
  ``overwrite`` is given, and even then files of other names inside it are kept. An output
  *file* may be new or an earlier result of ours (a JSON file holding one object, which is
  what every command writes); anything else is refused unless ``overwrite``. A file where a
  folder is expected, or a folder where a file is, is refused whatever ``overwrite`` says.
- **Atomic.** Files are written through :func:`descentlab.core.io.atomic_write`.
- **A failed command leaves nothing behind that it created.** :func:`prepared_outputs`
  creates the folders (and writes :data:`MARKER` into each one it creates or finds empty
  or ours), and when the body raises an exception it removes what it created: the folders
  it made, or, in a folder that existed, the entries that were not there before. Two exceptions keep things: an interrupt
  (``KeyboardInterrupt``; a checkpoint is what ``--resume`` continues from) and a created
  folder that now holds a checkpoint (:data:`KEEP_IF`), for the same reason.

Commands do not call this themselves: they declare their outputs when they register, e.g.
``p.set_defaults(run=fn, outputs=(folder("out"),))``, and ``descentlab.cli.main`` checks
them (and ``--json``, for every command) before running ``fn``, and cleans up after a
failure. Library code calls :func:`check_folder` / :func:`check_file` /
:func:`prepared_outputs` directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from descentlab.core.errors import InputError

#: Written into every output folder :func:`prepared_outputs` creates or adopts: says "ours".
MARKER = ".descentlab-output.json"
#: Names that also mark a folder as an earlier output of ours (folders made before MARKER).
RECOGNISE = (MARKER, "checkpoint.pt", "train_log.jsonl", "descentlab_index.json")
#: A created folder holding one of these (anywhere below it) is kept after a failure.
KEEP_IF = ("checkpoint.pt",)
#: What the refusal messages name as the way to go ahead anyway (the CLI says --overwrite).
OVERWRITE_HINT = "overwrite=True"


@dataclasses.dataclass(frozen=True)
class Output:
    """One declared output: the attribute of the parsed arguments that holds its path.

    ``kind``: ``"folder"`` or ``"file"``. ``recognise``: extra names that mark a folder as
    an earlier output of this command (besides :data:`RECOGNISE`). An empty or ``None``
    path means "no output" and is skipped.
    """

    attr: str
    kind: str = "folder"
    recognise: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("folder", "file"):
            raise ValueError(f"kind must be 'folder' or 'file', got {self.kind!r}")


def folder(attr: str = "out", *, recognise: Iterable[str] = ()) -> Output:
    """Declare ``args.<attr>`` an output folder (``set_defaults(outputs=(folder("out"),))``)."""
    return Output(attr, "folder", tuple(recognise))


def file(attr: str) -> Output:
    """Declare ``args.<attr>`` an output file (``--json`` is declared for every command)."""
    return Output(attr, "file")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we can create files in."""
    anc = _nearest_existing(path.parent if path.parent != path else path)
    if not anc.exists():
        raise InputError(f"cannot create the {what}: {anc} does not exist", where=path)
    if not anc.is_dir():
        raise InputError(f"cannot create the {what}: {anc} is not a folder", where=path)
    _probe_writable(anc, path, what)


def _probe_writable(directory: Path, path: Path, what: str) -> None:
    """Create and remove a temp file in ``directory`` (os.access lies for root, ACLs...)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".descentlab-probe-", dir=directory)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        where_ = "" if directory == path else f" ({directory})"
        raise InputError(f"cannot write the {what}{where_}: {reason.lower()}",
                         where=path) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def is_our_folder(path: str | os.PathLike, recognise: Iterable[str] = ()) -> bool:
    """True if folder ``path`` holds :data:`MARKER` or one of ``recognise``/:data:`RECOGNISE`."""
    p = Path(path)
    return any((p / name).exists() for name in (*RECOGNISE, *recognise))


def is_our_file(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a result we wrote: a JSON file holding one object."""
    p = Path(path)
    try:
        if p.stat().st_size > 256 * 2**20:
            return False
        with open(p, "rb") as f:
            head = f.read(1).lstrip()
            if head not in (b"{", b""):
                return False
            return isinstance(json.loads(head + f.read()), dict)
    except (OSError, ValueError, RecursionError):
        return False


def check_folder(path: str | os.PathLike, *, overwrite: bool = False,
                 recognise: Iterable[str] = (), what: str = "output folder",
                 hint: str = OVERWRITE_HINT) -> Path:
    """Check that ``path`` can be an output folder; returns it as a Path. Creates nothing.

    Accepted: a path that does not exist and whose nearest existing ancestor is a writable
    folder; an existing writable folder that is empty, an earlier output of ours (see
    :func:`is_our_folder`) or, with ``overwrite``, anything else. Refused (InputError
    naming the path): a file (whatever ``overwrite`` says), a path under a file, a
    read-only place, a non-empty folder of someone else's without ``overwrite``.
    """
    if path is None or str(path) == "":
        raise InputError(f"the {what} path is empty", where=repr(str(path or "")))
    p = Path(path)
    if os.path.lexists(p) and not p.exists():
        raise InputError(f"the {what} is a broken symbolic link", where=p)
    if p.exists() and not p.is_dir():
        raise InputError(f"exists and is not a folder; expected an {what} here "
                         "(it is left as it is)", where=p)
    if not p.exists():
        _check_parent(p, what)
        return p
    _probe_writable(p, p, what)
    if not overwrite and any(p.iterdir()) and not is_our_folder(p, recognise):
        raise InputError(f"folder exists, is not empty and is not an earlier output of "
                         f"descentlab; refusing to write into it ({hint} writes into it, "
                         "keeping files of other names)", where=p)
    return p


def check_file(path: str | os.PathLike, *, overwrite: bool = False,
               what: str = "output file", hint: str = OVERWRITE_HINT) -> Path:
    """Check that ``path`` can be written as a file; returns it as a Path. Creates nothing.

    Accepted: a new path in a writable place; an existing earlier result of ours (see
    :func:`is_our_file`) or, with ``overwrite``, any regular file. Refused (InputError
    naming the path): a folder or a path written as one (``out/``), a path under a file,
    a read-only place, another file without ``overwrite``.
    """
    if path is None or str(path) == "":
        raise InputError(f"the {what} path is empty", where=repr(str(path or "")))
    text = os.fspath(path)
    p = Path(path)
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise InputError(f"is a folder; expected the path of an {what}", where=text)
    if os.path.lexists(p) and not p.exists():
        raise InputError(f"the {what} is a broken symbolic link", where=p)
    if p.exists() and not p.is_file():
        raise InputError(f"exists and is not a regular file; expected an {what}", where=p)
    _check_parent(p, what)  # atomic_write renames a temp file in the parent folder
    if p.exists() and not overwrite and not is_our_file(p):
        raise InputError(f"file exists and is not an earlier JSON result of descentlab; "
                         f"refusing to replace it ({hint} replaces it)", where=p)
    return p


class PreparedOutputs:
    """What :func:`prepared_outputs` made: ``folders`` (checked, created) and ``files``."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.files: list[Path] = []
        self._created: list[Path] = []              # top-most folders we created
        self._before: dict[Path, set[str]] = {}     # existing folders: entries before
        self.kept: list[Path] = []                  # created folders kept after a failure

    def _cleanup(self) -> None:
        def holds_checkpoint(entries: list[Path]) -> bool:
            return any(e.name in KEEP_IF or (e.is_dir() and not e.is_symlink() and any(
                any(e.rglob(name)) for name in KEEP_IF)) for e in entries)

        for top in reversed(self._created):
            if holds_checkpoint([top]):
                self.kept.append(top)
            else:
                shutil.rmtree(top, ignore_errors=True)
        for p, before in self._before.items():
            try:
                new = [e for e in p.iterdir() if e.name not in before]
            except OSError:
                continue
            if holds_checkpoint(new):  # progress that --resume continues from
                self.kept.append(p)
                continue
            for entry in new:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()


def _write_marker(p: Path, command: str | None) -> None:
    from descentlab import __version__
    from descentlab.core.io import write_json

    if not (p / MARKER).exists():
        write_json(p / MARKER, {"written_by": "descentlab", "version": __version__,
                                "command": command})


def from_args(args, specs: Iterable[Output]) -> tuple[list, list]:
    """``(folders, files)`` for :func:`prepared_outputs` from declared outputs of ``args``.

    A folder comes back as ``(path, recognise)``; outputs whose path is empty are skipped.
    """
    folders, files = [], []
    for spec in specs:
        path = getattr(args, spec.attr, None)
        if path is None or str(path) == "":
            continue
        if spec.kind == "folder":
            folders.append((path, spec.recognise))
        else:
            files.append(path)
    return folders, files


@contextlib.contextmanager
def prepared_outputs(folders: Sequence[str | os.PathLike | tuple] = (),
                     files: Sequence[str | os.PathLike] = (), *, overwrite: bool = False,
                     recognise: Iterable[str] = (), command: str | None = None,
                     hint: str = OVERWRITE_HINT) -> Iterator[PreparedOutputs]:
    """Check every output, create the folders, run the body, remove what it made on failure.

    ``folders``: paths of output folders, or ``(path, recognise)`` pairs (names that mark
    that folder as an earlier output, added to ``recognise``); ``files``: paths of output
    files (checked only: written later, atomically, by the body). Every check runs before
    anything is created, so a bad second location leaves the first untouched.
    ``command`` is recorded in :data:`MARKER`. Usage::

        with prepared_outputs([out_dir], [json_path], overwrite=False):
            ...  # the work; on an exception what was created is removed
    """
    recognise = tuple(recognise)
    checked: dict[Path, tuple[str, ...]] = {}
    for f in folders:
        path, rec = f if isinstance(f, tuple) else (f, ())
        rec = (*recognise, *rec)
        checked.setdefault(check_folder(path, overwrite=overwrite, recognise=rec, hint=hint),
                           rec)
    prepared = PreparedOutputs()
    prepared.files = [check_file(f, overwrite=overwrite, hint=hint) for f in files]
    try:
        for p, rec in checked.items():
            if p.exists():
                before = {e.name for e in p.iterdir()}
                prepared._before.setdefault(p, before)
                if before and not is_our_folder(p, rec):
                    # written into with overwrite: not marked ours, so the next run asks again
                    prepared.folders.append(p)
                    continue
            else:
                top = _nearest_existing(p)
                try:
                    p.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise InputError(f"cannot create the output folder: "
                                     f"{(e.strerror or type(e).__name__).lower()}",
                                     where=p) from None
                made = p  # the top-most folder we made: the child of that ancestor
                while made.parent != top and made.parent != made:
                    made = made.parent
                if all(made != c and c not in made.parents for c in prepared._created):
                    prepared._created.append(made)
            _write_marker(p, command)
            prepared.folders.append(p)
        yield prepared
    except KeyboardInterrupt:
        raise
    except BaseException:
        prepared._cleanup()
        raise
