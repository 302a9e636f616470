"""Issue 11 point 5: every subcommand answers --help, and every argument and subcommand has help text."""

from __future__ import annotations

import argparse
import subprocess
import sys

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


HEAVY = ("msgspec", "duckdb", "pyarrow", "yaml", "starlette", "tqdm", "rich", "kafka", "crc32c",
         "easysched_es.core", "easysched_es.runtime.fold", "easysched_es.log", "easysched_es.web",
         "projections.service")


def test_11_building_the_parser_imports_nothing_heavy() -> None:
    """Every call builds the whole parser: a module that imports the core or a driver at the top slows every call."""
    code = ("import sys; from easysched_es.cli.app import build_parser; build_parser(); "
            "print('\\n'.join(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = proc.stdout.split()
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not heavy, f"imported while building the parser: {heavy}"


def test_help_defaults_named_without_importing_agree_with_their_source() -> None:
    from easysched_es.cli import schedules, ui
    from easysched_es.core.schedules import DS_EXECUTION_TYPES, OVERLAP
    from easysched_es.web.serve import DEFAULT_UI_PORT

    assert (*OVERLAP, *DS_EXECUTION_TYPES) == schedules.OVERLAP_POLICIES
    assert ui.DEFAULT_UI_PORT == DEFAULT_UI_PORT


def test_5_demo_offers_no_option_it_would_ignore() -> None:
    proc = run_cli("demo", "--data-dir", "/tmp/x")
    assert proc.returncode == 2 and "unrecognized arguments: --data-dir" in proc.stderr
    assert "--kafka" not in run_cli("demo", "--help").stdout
