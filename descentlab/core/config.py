"""Config dataclasses whose fields carry the only copy of their help, choices and bounds.

Declare a field with :func:`option` (default, one-line help, and optionally ``choices``,
``min``/``max``/``gt``); call :func:`check_config` in ``__post_init__`` and every bound and
choice is validated from that one declaration, with errors naming the field
(``PlannerConfig.lr: must be > 0, got -1``). The CLI builds its flags, choices and help from
the same fields (``descentlab.cli.options``) and maps a field error back to its flag.

Nothing here knows about the command line: a config is a plain dataclass, usable from a notebook.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from descentlab.core.errors import InputError

Choices = typing.Union[typing.Sequence[Any], Mapping[str, Any], Callable[[], Any], None]


def option(default: Any, help: str, *, choices: Choices = None, min: float | None = None,
           max: float | None = None, gt: float | None = None, lt: float | None = None,
           flag: bool = True) -> Any:
    """A dataclass field with a default, a one-line help, and what values it accepts.

    ``choices``: a sequence, a registry (a mapping: its keys) or a zero-argument callable
    returning either (read when needed, so a registry filled later is seen whole).
    ``min``/``max``: inclusive bounds; ``gt``/``lt``: exclusive ones. Bounds apply to
    each element of a tuple. ``None`` is accepted where the default is ``None``.
    ``flag=False`` keeps the field out of the CLI (set programmatically only).
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "gt": gt, "lt": lt,
            "flag": flag}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_choices(f: dataclasses.Field) -> list[Any] | None:
    """The values field ``f`` accepts, or None when any value of its type goes."""
    choices = f.metadata.get("choices")
    if callable(choices) and not isinstance(choices, Mapping):
        choices = choices()
    if choices is None:
        return None
    return list(choices.keys() if isinstance(choices, Mapping) else choices)


def field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


class ConfigError(InputError, ValueError):
    """A config field out of range (a ValueError too, for Python callers): ``where`` is ``Class.field``; ``config`` and ``field``
    let a front end (the CLI) name the place its own way (the flag it registered)."""

    def __init__(self, message: str, config: str, field: str):
        self.config, self.field = config, field
        super().__init__(message, where=f"{config}.{field}")


def field_error(cfg: Any, name: str, message: str) -> ConfigError:
    """An error about field ``name`` of config ``cfg`` (for checks across fields)."""
    return ConfigError(message, type(cfg).__name__, name)


def _bound_problem(f: dataclasses.Field, v: Any) -> str | None:
    m = f.metadata
    lo, hi, gt, lt = m.get("min"), m.get("max"), m.get("gt"), m.get("lt")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and math.isnan(v):  # bounded or not: no field means "unset" by nan
        return "must be a number, got nan"
    if gt is not None and not v > gt:
        return f"must be > {gt}, got {v}"
    if lt is not None and not v < lt:
        return f"must be < {lt}, got {v}"
    if lo is not None and not v >= lo:
        return f"must be >= {lo}, got {v}"
    if hi is not None and not v <= hi:
        return f"must be <= {hi}, got {v}"
    return None


_SCALARS = {int: (int, np.integer), float: (int, float, np.integer, np.floating),
            bool: (bool, np.bool_), str: (str,)}


def strip_optional(tp: Any) -> Any:
    """``X`` of ``Optional[X]`` / ``X | None``; None for a union of several types; any other
    type unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return tp


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, tuple[Any, bool]]:
    """Per field: (the scalar type its values must have or None, whether it is a tuple)."""
    out = {}
    for name, tp in typing.get_type_hints(cls).items():
        tp = strip_optional(tp)
        many = typing.get_origin(tp) in (tuple, list)
        if many:
            tp = (typing.get_args(tp) or (None,))[0]
        out[name] = (tp if tp in _SCALARS else None, many)
    return out


def _type_problem(tp: Any, v: Any) -> str | None:
    if tp is None:
        return None
    ok = isinstance(v, _SCALARS[tp]) and (tp is bool or not isinstance(v, (bool, np.bool_)))
    return None if ok else f"expected {'a' if tp is not int else 'an'} {tp.__name__}, got {v!r}"


def check_config(cfg: Any) -> None:
    """Validate every field of dataclass ``cfg`` against its type and its :func:`option`
    declaration. Raises :class:`ConfigError` naming the first field that is of the wrong
    type or out of its choices or bounds.
    """
    kinds = _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None and field_default(f) is None:
            continue
        tp, many = kinds.get(f.name, (None, False))
        if many and not isinstance(v, (tuple, list)):
            raise ConfigError(f"expected a sequence, got {v!r}", type(cfg).__name__, f.name)
        values = v if isinstance(v, (tuple, list)) else (v,)
        choices = field_choices(f)
        for item in values:
            problem = _type_problem(tp, item)
            if problem:
                raise ConfigError(problem, type(cfg).__name__, f.name)
            if choices is not None and item not in choices:
                raise ConfigError(f"unknown value {item!r}; choose from "
                                  f"{', '.join(map(str, choices))}", type(cfg).__name__, f.name)
            problem = _bound_problem(f, item)
            if problem:
                raise ConfigError(problem, type(cfg).__name__, f.name)
