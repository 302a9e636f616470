"""The `easysched` command line: the parser, the registry of subcommand modules, and error handling.

Exit codes: 0 success, 1 rejected or failed request, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from easysched_es.cli import debug, kafka, queries, service, skip, workflows
from easysched_es.cli.common import EXIT_FAILED, EXIT_OK, Registrar, UsageError
from easysched_es.flows import FlowFileError
from easysched_es.log.base import LogError, LogLockedError
from easysched_es.runtime.embedded.client import CommandRejectedError
from easysched_es.runtime.embedded.datadir import resolve

# One line per subcommand module: each has `register(reg)`.
MODULES = (workflows, queries, debug, service, kafka, skip)


def build_parser() -> argparse.ArgumentParser:
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
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="easysched",
        description="An event-sourced workflow scheduler: every input is a command in a log; "
        "state and timers are a fold over it.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help=common._actions[0].help)
    parser.add_argument("--kafka", metavar="BOOTSTRAP", default=None, help=common._actions[1].help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    reg = Registrar(sub, common, as_json)
    for module in MODULES:
        module.register(reg)
    _register_projections(reg)
    return parser


def _register_projections(reg: Registrar) -> None:
    """The DuckDB subcommands live in the `projections` package, installed beside this one."""
    try:
        from projections.cli import register as register_projections
    except ImportError:
        return
    register_projections(reg.sub, parents=[reg.common])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.data_dir = resolve(args.data_dir)
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except (FlowFileError, CommandRejectedError) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LogLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LogError as exc:
        print(f"log error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `easysched query ... | head`: the reader left; say nothing more, and keep Python's
        # shutdown flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return EXIT_OK
