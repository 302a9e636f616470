"""`--request-id`, `--no-wait` and `--timeout` for the commands that change state (issue 14 point 2).

Every invocation sends its command with a request id (a fresh one, or `--request-id ID` to retry
one): the fold answers a repeat with its first decision, so retrying a `start` that timed out
returns the same instance instead of creating a second. The id is printed on stderr (and in
`--json`), with how to retry; `status --request-id ID` finds what it decided.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from easysched_es.cli.common import EXIT_OK, Undecided, note, print_json


def options(*, with_no_wait: bool = True) -> argparse.ArgumentParser:
    """The parent parser holding the options (`--no-wait` only `with_no_wait`)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--request-id", metavar="ID", default=None,
                   help="this request's id (default: a fresh one, printed); send the same id to retry "
                   "safely: a repeat gets the first decision (a retried start returns the same instance)")
    if with_no_wait:
        p.add_argument("--no-wait", action="store_true",
                       help="return as soon as the command is in the log, with its partition, offset and request id")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="wait at most SECONDS for the master's decision (Kafka; default 30); then exit 4 "
                   "with the request id to retry with")
    return p


def request_id(args: argparse.Namespace) -> str:
    """The invocation's request id: `--request-id`, else a fresh one (kept on `args`)."""
    if not getattr(args, "_request_id", None):
        from easysched_es.runtime.requests import new_request_id

        args._request_id = args.request_id or new_request_id()
    rid: str = args._request_id
    return rid


def prepare(args: argparse.Namespace, target: Any) -> None:
    """Apply `--timeout` to a client and say which request id this is."""
    if args.timeout is not None and hasattr(target, "timeout"):
        target.timeout = args.timeout
    if not args.json:
        note(f"request id {request_id(args)} (to retry safely: --request-id {request_id(args)})")


def no_wait(args: argparse.Namespace, target: Any, command: Any) -> int:
    """`--no-wait`: put the command in the log and print where it is."""
    placed = target.send(command)
    result = {"request_id": request_id(args), "accepted": None,
              "placed": [{"partition": p, "offset": o} for p, o in placed]}
    if args.json:
        print_json(result)
    else:
        where = ", ".join(f"partition {p} offset {o}" for p, o in placed)
        print(f"in the log ({where}); not waiting for the decision: "
              f"easysched status --request-id {request_id(args)}")
    return EXIT_OK


@contextlib.contextmanager
def undecided_names_the_request(args: argparse.Namespace) -> Iterator[None]:
    """A wait that runs out says which request id to retry with (exit 4, `undecided`)."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ != "NoMasterError":
            raise
        rid = request_id(args)
        raise Undecided(f"accepted, not yet decided: {exc} Retry safely with --request-id {rid}; "
                        f"easysched status --request-id {rid} shows the decision once made",
                        request_id=rid) from None

