"""Config dataclasses as argparse flags: the flags, choices and help come from the fields.

:func:`add_config_args` adds one ``--flag`` per field that has a flag and records, on the
subcommand, which flag each ``(config, field)`` became; :func:`config_from_args` builds the
config back from what the user set (flagless fields are never read from arguments).
:func:`flag_for` turns a library error's field (``PlannerConfig.lr``, or a parameter name
such as ``start``) into the flag the user typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

from descentlab.core.config import field_choices, field_default, strip_optional

C = TypeVar("C")


def _scalar_type(tp: Any) -> Any:
    """Strip Optional[...] / X | None to the underlying scalar type (str for a union)."""
    return strip_optional(tp) or str


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _bounds(f: dataclasses.Field) -> str:
    signs = {"gt": ">", "min": ">=", "lt": "<", "max": "<="}
    parts = [f"{sign} {f.metadata[k]}" for k, sign in signs.items()
             if f.metadata.get(k) is not None]
    return f"; {', '.join(parts)}" if parts else ""


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                    skip: typing.Collection[str] = ()) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (``under_scores`` -> ``dashes``).

    Defaults are ``None`` on the parser so that :func:`config_from_args` can tell which
    flags the user actually set (and e.g. let a preset fill the rest).
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    flags = dict(parser.get_default("config_flags") or {})
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True) or f.name in skip:
            continue
        tp = _scalar_type(hints[f.name])
        kwargs: dict[str, Any] = {
            "default": None, "dest": prefix + f.name,
            "help": f"{f.metadata.get('help', '')} (default: {field_default(f)}{_bounds(f)})"
                    .replace("%", "%%")}  # argparse formats help with %
        choices = field_choices(f)
        if choices:
            kwargs["choices"] = choices
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
        flags[f"{cls.__name__}.{f.name}"] = flag
    parser.set_defaults(config_flags=flags)


def summary(obj) -> str:
    """The first paragraph of ``obj``'s docstring on one line, without its final period or
    reStructuredText literal quotes."""
    first = (obj.__doc__ or "").strip().split("\n\n")[0].replace("``", "")
    return " ".join(first.split()).rstrip(".")


def registry_help(registry: dict, describe=summary) -> str:
    """``name: description`` of every entry of a registry (``describe(value)``), for a
    flag's help: built from the registry, so it lists exactly its choices."""
    return "; ".join(f"{name}: {describe(value)}" for name, value in registry.items())


def user_fields(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The fields of config ``cls`` whose flags the user set: {field: value}."""
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None) if f.metadata.get("flag", True) else None
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return values


def config_from_args(cls: type[C], args: argparse.Namespace, prefix: str = "",
                     base: C | None = None) -> C:
    """Build ``cls`` from parsed args: flags the user set override ``base`` (or defaults)."""
    values = dataclasses.asdict(base) if base is not None else {}
    return cls(**{**values, **user_fields(cls, args, prefix)})


def flag_for(args: argparse.Namespace, where: str | None) -> str | None:
    """The flag the user typed for a library error's ``where``, or None if it has none.

    ``Class.field`` maps through what :func:`add_config_args` registered; a bare name
    (a function parameter such as ``start``) maps to the subcommand's option of that dest.
    """
    if not where:
        return None
    flags = getattr(args, "config_flags", None) or {}
    if where in flags:
        return flags[where]
    parser = getattr(args, "subparser", None)
    if parser is not None and where.isidentifier():
        for action in parser._actions:
            if action.dest == where and action.option_strings:
                return action.option_strings[-1]
    return None
