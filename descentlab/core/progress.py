"""Progress bars for long work (tqdm; quiet when stderr is not a terminal unless forced)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             disable: bool | None = None, **kwargs: Any):
    """A tqdm bar on stderr. ``DESCENTLAB_PROGRESS=0/1`` forces it off/on."""
    from tqdm.auto import tqdm

    if disable is None:
        env = os.environ.get("DESCENTLAB_PROGRESS")
        disable = (env == "0") if env is not None else not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False,
                dynamic_ncols=True, **kwargs)
