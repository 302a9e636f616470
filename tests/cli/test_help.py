"""Issue 11 point 5: every subcommand answers --help, and every argument and subcommand has help text."""

from __future__ import annotations

import argparse

import pytest

from easysched_es.cli.app import build_parser
from tests.cli.helpers import run_cli

Command = tuple[tuple[str, ...], argparse.ArgumentParser]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Command]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_every_subcommand_is_listed() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"define", "start", "status", "wait", "query", "history", "stats", "projections rebuild"} <= names


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_of_every_command(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    proc = run_cli(*path, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: easysched"), proc.stderr
    assert parser.description, f"`easysched {' '.join(path)}` has no description"
    assert "exit codes: 0 ok" in proc.stdout
    for action in parser._actions:
        what = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"easysched {' '.join(path)}: {what} has no help"
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"easysched {' '.join(path)} {choice.dest} has no help"
