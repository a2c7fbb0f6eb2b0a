"""Config dataclasses whose field helps are the only copy: CLI flags come from them.

Declare a field with :func:`option` (default + one-line help); :func:`add_config_args`
turns a config class into argparse flags and :func:`config_from_args` builds the config
back, so the help text lives in exactly one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def option(default: Any, help: str, *, choices: typing.Sequence[Any] | None = None,
           flag: bool = True) -> Any:
    """A dataclass field with a default, a one-line help, optional choices.

    ``flag=False`` keeps the field out of the CLI (set programmatically only).
    """
    meta = {"help": help, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _scalar_type(tp: Any) -> Any:
    """Strip Optional[...] / X | None to the underlying scalar type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                    skip: typing.Collection[str] = ()) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (``under_scores`` -> ``dashes``).

    Defaults are ``None`` on the parser so that :func:`config_from_args` can tell which
    flags the user actually set (and e.g. let a preset fill the rest).
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True) or f.name in skip:
            continue
        tp = _scalar_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = {"default": None, "dest": prefix + f.name,
                                  "help": f"{f.metadata.get('help', '')} (default: {default})"}
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        if tp is bool:
            kwargs["type"] = _bool
            kwargs["metavar"] = "BOOL"
        elif typing.get_origin(tp) in (list, tuple):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs["type"] = inner
            kwargs["nargs"] = "+"
        elif tp in (int, float, str):
            kwargs["type"] = tp
        flag = "--" + (prefix + f.name).replace("_", "-")
        group.add_argument(flag, **kwargs)


def config_from_args(cls: type[C], args: argparse.Namespace, prefix: str = "",
                     base: C | None = None) -> C:
    """Build ``cls`` from parsed args: flags the user set override ``base`` (or defaults)."""
    values = dataclasses.asdict(base) if base is not None else {}
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


def config_help(cls: type) -> list[tuple[str, Any, str]]:
    """``(name, default, help)`` per field, for docs and tables."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, default, f.metadata.get("help", "")))
    return out
