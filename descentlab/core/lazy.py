"""Lazy public APIs (PEP 562): a wing's ``__init__`` names what it exports and from which
module, and each name is imported on first use, so importing a wing (and the CLI's
``--help``) stays cheap and torch loads only when something that needs it is used.

In a wing's ``__init__``::

    __getattr__, __all__ = lazy_exports(__name__, {"plan": "api", "PlanResult": "planner"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object],
                                                                   list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``exports`` maps name -> submodule."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    return __getattr__, sorted(exports)
