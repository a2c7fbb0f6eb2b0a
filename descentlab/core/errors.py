"""User-facing errors: one clear line, exit code 2, never a traceback.

Exit codes of the ``descentlab`` command: :data:`EXIT_OK` (0) success, :data:`EXIT_FAILED`
(1) the command ran but failed (an invalid plan, a goal not reached, an OS error while
writing), :data:`EXIT_INPUT_ERROR` (2) bad input (an :class:`InputError` or a usage error).
"""

from __future__ import annotations

import os
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT_ERROR = 2


class InputError(Exception):
    """Bad input from the user (a file, a row, a flag).

    ``where`` names the place (``file.map:12``, ``data.jsonl row 3, field 'chosen'``,
    ``--start``); the CLI prints ``error: <where>: <message>`` and exits with code 2.
    """

    def __init__(self, message: str, where: str | os.PathLike | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        super().__init__(self.line())

    def line(self) -> str:
        """The one line the user sees."""
        return f"{self.where}: {self.message}" if self.where else self.message


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise InputError if it is not an existing file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found", where=p)
    if not p.is_file():
        raise InputError(f"{what} is not a regular file", where=p)
    return p
