"""Entry point of the ``descentlab`` command.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, adding its
subcommands with ``set_defaults(run=fn)``. ``fn(args) -> dict`` does the work and returns
the result object; this module prints nothing of its own but writes ``--json`` from that
same object and turns :class:`InputError` into one line and exit code 2.

Outputs (:mod:`descentlab.core.outputs`): a subcommand declares its output folders with
``set_defaults(outputs=(folder("out"),))``; before ``fn`` runs, :func:`main` checks them
and ``--json`` (for every command), creates the folders, and removes what it created if
``fn`` fails. ``--overwrite`` (every command) lets them replace what is not ours.

Exit codes (:mod:`descentlab.core.errors`): 0 success; 1 the command ran but failed (``fn``
sets ``args.exit_code = EXIT_FAILED``, e.g. an invalid plan; or an OS error while writing);
2 bad input (an :class:`InputError`, or an argparse error: one line with a ``--help`` hint).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from descentlab.core.errors import EXIT_FAILED, EXIT_INPUT_ERROR, EXIT_OK, InputError

# command -> (the module whose ``register(sub)`` adds it, its one-line help). Only the
# module of the command being run is imported, so ``descentlab --help`` (and every other
# command) does not pay for torch or the other wings.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("descentlab.cli.demo", "run every part on embedded defaults"),
    "plan": ("descentlab.cli.planning", "plan one path on a grid map"),
    "plan-bench": ("descentlab.cli.planning", "benchmark a planner on MovingAI scenarios"),
    "navigate": ("descentlab.cli.navigation", "navigate a map seen only near the bot (SPEC B)"),
    "nav-bench": ("descentlab.cli.navigation", "benchmark navigators side by side"),
    "rag": ("descentlab.cli.rag", "retrieval-augmented LM training (SPEC E)"),
    "prefopt": ("descentlab.cli.preference",
                "preference optimisation (DPO family, on-policy PDPO)"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors in one line: ``PROG: error: MESSAGE (see 'PROG --help')``, exit 2.

    The default prints the whole usage (44 lines for some commands) before the message.
    Subparsers inherit the class (``add_subparsers`` uses ``type(self)``).
    """

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        if message.endswith("expected one argument") and any(
                a[:1] == "-" and a[1:2] in "0123456789." and a[1:2] for a in self._argv):
            flag = message.removeprefix("argument ").split(":")[0].split("/")[-1]
            argv = self._argv
            value = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag), "VALUE")
            message += f" (a value that starts with '-' needs '=': {flag}={value})"
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message} "
                                    f"(see '{self.prog} --help')\n")


def add_common_args(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """The flags every subcommand has: --seed, --json, --overwrite, and (by default) --device.

    Also records the subcommand's parser (``args.subparser``) so that a library error naming
    a parameter or config field can be shown with the flag the user typed.
    """
    parser.set_defaults(subparser=parser)
    if device:
        parser.add_argument("--device", default="cpu",
                            help="torch device: cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the result as JSON to PATH (checked before the work "
                             "starts; replaces only an earlier JSON result unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let outputs replace what descentlab did not write: write into a "
                             "non-empty folder (files of other names are kept), replace a file "
                             "at --json")


class _Subcommands:
    """What a module's ``register`` sees as ``sub``: ``add_parser`` with the help of
    :data:`COMMANDS`, so the listing and the command agree."""

    def __init__(self, sub: argparse._SubParsersAction):
        self._sub = sub

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs["help"] = COMMANDS[name][1]
        return self._sub.add_parser(name, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full flags of the command named in ``argv`` only (the others
    are listed by name and help); ``argv=None`` builds every command in full."""
    parser = ArgumentParser(
        prog="descentlab",
        description="Trust gradient descent: planning, preference optimisation, RAG training.")
    from descentlab import __version__

    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(COMMANDS) if argv is None else {a for a in argv if a in COMMANDS}
    modules = {COMMANDS[c][0] for c in wanted}
    for name, (module, help_) in COMMANDS.items():
        if module not in modules:
            sub.add_parser(name, help=help_)
        elif name not in sub.choices:
            importlib.import_module(module).register(_Subcommands(sub))
    return parser


def _outputs(args: argparse.Namespace):
    """The declared outputs of this subcommand, and ``--json``, checked and prepared."""
    from descentlab.core import outputs

    specs = [*getattr(args, "outputs", ()), outputs.file("json")]
    folders, files = outputs.from_args(args, specs)
    return outputs.prepared_outputs(folders, files, overwrite=getattr(args, "overwrite", False),
                                    command=_command_name(args), hint="--overwrite")


def _command_name(args: argparse.Namespace) -> str:
    """``descentlab rag index``: the command and its subcommand words."""
    words = [getattr(args, "command", "")]
    words += [getattr(args, a) for a in vars(args) if a.endswith("_command") and getattr(args, a)]
    return " ".join(["descentlab", *map(str, words)])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[:1] if argv and not argv[0].startswith("-") else [])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_INPUT_ERROR)
    name = _command_name(args)
    try:
        with _outputs(args):
            result = args.run(args)
        if getattr(args, "json", None) and result is not None:
            from descentlab.core.io import write_json

            try:
                write_json(args.json, result)
            except OSError as e:  # checked before the work: a disk full or a race since
                print(f"{name}: failed: {args.json}: cannot write the JSON result: "
                      f"{(e.strerror or type(e).__name__).lower()}", file=sys.stderr)
                return EXIT_FAILED
    except InputError as e:
        from descentlab.cli.options import flag_for

        flag = flag_for(args, e.where)
        line = f"{flag}: {e.message}" if flag else e.line()
        print(f"{name}: error: {line}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, a file that vanished: the run failed, in one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"{name}: failed: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    return int(getattr(args, "exit_code", EXIT_OK) or EXIT_OK)


if __name__ == "__main__":
    raise SystemExit(main())
