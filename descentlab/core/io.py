"""Atomic writes, JSON results and JSONL reading with line numbers.

Every file the project writes goes through :func:`atomic_write` (temp file + rename in the
same folder) so that an interrupted run never leaves a half-written result behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from descentlab.core.errors import InputError, require_file


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``path``; on success rename it over ``path``.

    Usage: ``with atomic_write(p, "wb") as f: f.write(...)``. On an exception the temp file
    is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should be readable like any file
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, NumPy/torch scalars and arrays, Paths and tuples to JSON types.

    Non-finite floats become ``None`` (JSON has no NaN).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` (converted by :func:`to_jsonable`) as indented JSON."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2)
        f.write("\n")
    return path


def _read_error(e: OSError) -> str:
    return f"cannot read the file: {(e.strerror or type(e).__name__).lower()}"


def _decode(raw: bytes, where: str) -> str:
    """UTF-8 text of ``raw``; otherwise an InputError naming ``where`` and the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}; "
                         "save the file as UTF-8)", where=where) from None


def _loads(text: str, where: str, what: str = "invalid JSON") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} ({e.msg}, column {e.colno})", where=where) from None
    except RecursionError:
        raise InputError(f"{what} (nested too deeply)", where=where) from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise InputError(f"{what} ({e})", where=where) from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (UTF-8); a missing, unreadable or malformed file raises InputError
    naming it (and the line)."""
    p = require_file(path, "JSON file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(_read_error(e), where=p) from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (Windows editors)
        raw = raw[3:]
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        _decode(line, f"{p}:{lineno}")  # names the line of a bad byte
    text = raw.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", where=f"{p}:{e.lineno}") from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", where=p) from None
    except ValueError as e:
        raise InputError(f"invalid JSON: {e}", where=p) from None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Lines end at ``\\n`` (a ``\\r`` before it is whitespace). A line that is not UTF-8 or
    not a JSON object raises InputError naming the file and line; an unreadable file names
    the file. A UTF-8 byte-order mark at the start is skipped.
    """
    p = require_file(path, "JSONL file")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise InputError(_read_error(e), where=p) from None
    with f:
        for lineno, raw in enumerate(_lines(f, p), start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            where = f"{p}:{lineno}"
            line = _decode(raw, where)
            if not line.strip():
                continue
            obj = _loads(line, where)
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object per line", where=where)
            yield lineno, obj


def _lines(f, p: Path) -> Iterator[bytes]:
    try:
        yield from f
    except OSError as e:
        raise InputError(_read_error(e), where=p) from None
