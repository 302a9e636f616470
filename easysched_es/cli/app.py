"""The `easysched` command line: the parser, the registry of subcommand modules, and error handling.

Exit codes (`common.EXIT_*`): 0 ok, 1 rejected/failed/unknown, 2 usage, 3 `wait` timed out,
4 accepted into the log but not yet decided. With `--json`, every error is one JSON object on
stdout, `{"error": ..., "kind": ...}`; without it, one line on stderr. No traceback reaches a
user (`-v` shows it for an internal error).

Building the parser imports only argparse and the small subcommand modules; each handler imports
what it needs when it runs, so `easysched --help` and `easysched status` answer at once
(`bench/cli.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from easysched_es.cli import (
    backfill,
    capacity,
    catalog,
    debug,
    dsimport,
    exchange,
    kafka,
    logs,
    queries,
    recovery,
    schedules,
    schema,
    service,
    skip,
    ui,
    workflows,
)
from easysched_es.cli.common import (
    DEFAULT_KAFKA_TIMEOUT,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Parser,
    Registrar,
    UsageError,
    wants_json,
)

# argparse translates each of its messages through gettext, which looks for locale catalogues
# on disk every time (about 90 lookups to build this parser: a third of `easysched status`'s
# own time). The CLI speaks English only, so its messages go through untranslated.
argparse._ = str  # type: ignore[attr-defined]
argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]

# One line per subcommand module: each has `register(reg)`.
MODULES = (workflows, queries, debug, dsimport, exchange, service, kafka, skip, ui, capacity, schedules, logs, catalog,
           schema, recovery, backfill)


def build_parser() -> argparse.ArgumentParser:
    """The whole `easysched` parser: the shared options, then every module's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory of the embedded log (env EASYSCHED_DATA_DIR, default ./.easysched)",
    )
    common.add_argument(
        "--kafka", metavar="BOOTSTRAP", default=argparse.SUPPRESS,
        help="use the Kafka log at BOOTSTRAP (host:port[,host:port]) instead of the embedded one (env EASYSCHED_KAFKA)",
    )
    common.add_argument(
        "--kafka-timeout", metavar="SECONDS", type=float, default=argparse.SUPPRESS,
        help=f"give up on a Kafka broker that does not answer within SECONDS (default {DEFAULT_KAFKA_TIMEOUT:g})",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output (errors too)")

    parser = Parser(
        prog="easysched",
        description="An event-sourced workflow scheduler: every input is a command in a log; "
        "state and timers are a fold over it.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--data-dir", type=Path, default=None, help=common._actions[0].help)
    parser.add_argument("--kafka", metavar="BOOTSTRAP", default=None, help=common._actions[1].help)
    parser.add_argument("--kafka-timeout", metavar="SECONDS", type=float, default=DEFAULT_KAFKA_TIMEOUT,
                        help=common._actions[2].help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="the command to run")

    reg = Registrar(sub, common, as_json)
    for module in MODULES:
        module.register(reg)
    _register_projections(reg)
    for subparser in sub.choices.values():
        subparser.set_defaults(_parser=subparser)
    _add_epilog(parser)
    return parser


def _add_epilog(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's --help ends with the exit codes, whoever registered it."""
    parser.epilog = parser.epilog or EXIT_CODES_HELP
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_epilog(subparser)


def _register_projections(reg: Registrar) -> None:
    """The DuckDB subcommands live in the `projections` package, installed beside this one."""
    try:
        from projections.cli import register as register_projections
    except ImportError:
        return
    register_projections(reg.sub, parents=[reg.common])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `easysched` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        _configure_logging(args.verbose)
        from easysched_es.log.kafka_logs import quiet_driver_logs

        # kafka-python's reconnect chatter: hidden in one-shot commands (the services turn it back on).
        quiet_driver_logs(long_running=False, verbose=args.verbose)
        from easysched_es.runtime.embedded.location import resolve

        args.data_dir = resolve(args.data_dir)
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `easysched query ... | head`: the reader left; say nothing more, and keep Python's
        # shutdown flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # every error ends here, printed once, never as a traceback
        error = exc if isinstance(exc, CliError) else _translate(exc, verbose=bool(args and args.verbose))
        return _report(error, args, argv, parser)


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _translate(exc: Exception, *, verbose: bool) -> CliError:
    """A library error as the CliError a user sees (its kind, its message, its exit code)."""
    from easysched_es.cli.errors import translate

    return translate(exc, verbose=verbose)


def _report(error: CliError, args: argparse.Namespace | None, argv: Sequence[str],
            parser: argparse.ArgumentParser) -> int:
    if wants_json(args, argv):
        from easysched_es.cli.common import print_json

        print_json(error.as_json())
    elif isinstance(error, UsageError):
        usage_of = error.parser or getattr(args, "_parser", None) or parser
        usage_of.print_usage(sys.stderr)
        print(f"{usage_of.prog}: error: {error.message}", file=sys.stderr)
    else:
        prefix = "rejected" if error.kind in ("rejected", "invalid_definition") else "error"
        print(f"{prefix}: {error.message}", file=sys.stderr)
    return EXIT_USAGE if isinstance(error, UsageError) else error.exit_code
