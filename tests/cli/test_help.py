"""Every command and subcommand prints its help (exit 0); the top-level help loads no torch."""

import subprocess
import sys

import pytest

from descentlab.cli.main import build_parser, main


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


COMMANDS = sorted(set(_commands(build_parser())))


def test_every_command_is_listed():
    assert {("plan",), ("navigate",), ("prefopt", "train"), ("rag", "experiment"),
            ("demo",)} <= set(COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_help(words, capsys):
    assert main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: descentlab " + " ".join(words))


def test_top_level_help_does_not_import_torch():
    code = ("import sys; from descentlab.cli.main import main\n"
            "main(['--help'])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
