"""`easysched skip OFFSET --reason ...`: pass over a command whose application raised (the dead-letter path).

The skip is a command in the log (on Kafka, in the stopped partition: `--partition`): every
fold, the master's and every replay's, passes over the same command, and `trace`/`replay` show
it (`command_skipped` at the skipped offset, `skip_recorded` at the skip's own).
"""

from __future__ import annotations

import argparse

from easysched_es.cli.common import (
    EXIT_OK,
    Registrar,
    UsageError,
    client,
    kafka_bootstrap,
    non_negative_int,
    print_json,
)


def cmd_skip(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why the command is passed over (it stays in the log)")
    target = client(args)
    if kafka_bootstrap(args):
        verdict = target.skip(args.offset, args.reason, partition=args.partition)
    elif args.partition:
        raise UsageError("the embedded log has one partition (0); --partition is for --kafka")
    else:
        verdict = target.skip(args.offset, args.reason)
    if args.json:
        print_json({"skipped": args.offset, "offset": verdict.offset, "accepted": True})
    else:
        print(f"skip {args.offset}: accepted (offset {verdict.offset}); the partition goes on without it")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add `skip`."""
    p = reg.add(
        "skip", cmd_skip,
        "pass over the command at OFFSET, on which the partition stopped because applying it raised",
        reg.as_json,
    )
    p.add_argument("offset", type=int, help="the offset of the command the partition stopped on (the error names it)")
    p.add_argument("--reason", required=True, help="why it is passed over (kept in the log)")
    p.add_argument("--partition", type=non_negative_int, default=0, metavar="P",
                   help="the partition the command is in (Kafka: the error names it; the embedded log has only 0)")
