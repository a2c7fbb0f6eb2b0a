"""Entry point of the ``descentlab`` command.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, adding its
subcommands with ``set_defaults(run=fn)``. ``fn(args) -> dict`` does the work and returns
the result object; this module prints nothing of its own but writes ``--json`` from that
same object and turns :class:`InputError` into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from descentlab.core.errors import EXIT_INPUT_ERROR, InputError

# One module per wing; each registers its own subcommands.
COMMAND_MODULES = (
    "descentlab.cli.demo",
    "descentlab.cli.planning",
    "descentlab.cli.navigation",
    "descentlab.cli.rag",
    "descentlab.cli.preference",
)


def add_common_args(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """The flags every subcommand has: --seed, --json, and (by default) --device."""
    if device:
        parser.add_argument("--device", default="cpu",
                            help="torch device: cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the result as JSON to PATH")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="descentlab",
        description="Trust gradient descent: planning, preference optimisation, RAG training.")
    from descentlab import __version__

    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
        if getattr(args, "json", None) and result is not None:
            from descentlab.core.io import write_json

            write_json(args.json, result)
    except InputError as e:
        print(f"descentlab {args.command}: error: {e.line()}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
