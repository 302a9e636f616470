"""`backfill WORKFLOW --from DATE --to DATE ...` (COMPLEMENT_DATA) and `status <backfill-id>`.

`stop <backfill-id>` is the ordinary `stop` (the fold tells a backfill id from an instance id).
The fold checks every field (core/backfill.py); this module only shapes the request and, with
`--wait`, follows the backfill with a progress bar on stderr until it ends.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from easysched_es.cli import requesting
from easysched_es.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    NotFoundError,
    Registrar,
    UsageError,
    WaitTimeout,
    client,
    parse_params,
    positive_int,
    print_json,
    source,
)

SUFFIX = "-backfill"  # core.backfill.SUFFIX, without importing the core for every CLI call


def is_backfill(identifier: str | None) -> bool:
    """Whether `status`/`stop` got a backfill id (P-O-backfill)."""
    return bool(identifier) and str(identifier).endswith(SUFFIX)


def cmd_backfill(args: argparse.Namespace) -> int:
    from easysched_es.core import commands as c

    dates = [d.strip() for d in args.dates.split(",") if d.strip()] if args.dates else []
    if args.serial and args.parallel is not None:
        raise UsageError("give --serial or --parallel N, not both")
    fields: dict[str, Any] = {
        "workflow": args.workflow, "from_date": args.from_date or "", "to_date": args.to_date or "", "dates": dates,
        "parallel": 1 if args.parallel is None else args.parallel, "reverse": args.reverse,
        "dependents": args.dependents or args.all_levels, "all_levels": args.all_levels,
        "params": parse_params(args.param), "timezone": args.timezone,
    }
    target = client(args)
    requesting.prepare(args, target)
    rid = requesting.request_id(args)
    if args.no_wait:
        return requesting.no_wait(args, target, c.StartBackfill(**fields, request_id=rid))
    with requesting.undecided_names_the_request(args):
        backfill = target.backfill(**fields, request_id=rid)
    from easysched_es.cli.workflows import _note_pending

    _note_pending(target)  # no master: the dates wait for `easysched run` (and so would --wait)
    if not args.wait:
        if args.json:
            print_json({"backfill": backfill, "request_id": rid, **target.backfill_status(backfill)})
        else:
            view = target.backfill_status(backfill)
            print(backfill)
            print(f"{view['total']} dates of {args.workflow}, {view['parallel']} at a time; "
                  f"follow it: easysched status {backfill}; stop it: easysched stop {backfill}")
        return EXIT_OK
    final = _follow(args, target, backfill)
    if args.json:
        print_json({"backfill": backfill, "request_id": rid, **final})
    else:
        print(f"{backfill} {final['state']}: {final['succeeded']} of {final['total']} dates succeeded, "
              f"{final['failed']} failed" + (f" ({final['halted']})" if final.get("halted") else ""))
    return EXIT_OK if final["state"] == "SUCCESS" else EXIT_FAILED


def _follow(args: argparse.Namespace, target: Any, backfill: str) -> dict[str, Any]:
    """Wait for the backfill's end, with a rich progress bar on stderr (none with --json)."""
    from easysched_es.query_verbs import WaitTimeoutError

    try:
        if args.json:
            return dict(target.backfill_wait(backfill, args.wait_timeout))
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(backfill, total=None, detail="")

            def show(view: dict[str, Any]) -> None:
                bar.update(task, total=view["total"], completed=view["done"],
                           detail=f"{view['running']} running, {view['failed']} failed")

            return dict(target.backfill_wait(backfill, args.wait_timeout, on_progress=show))
    except WaitTimeoutError as exc:
        raise WaitTimeout(str(exc), backfill=backfill, state=exc.state) from None


def show_status(args: argparse.Namespace) -> int:
    """`status <backfill-id>`: done/total, running and failed dates of one backfill."""
    from easysched_es.backfill_verbs import UnknownBackfillError, backfill_partition, progress_of
    from easysched_es.runtime.fold import load_state

    src = source(args)
    try:
        view = progress_of(load_state(src, partition=backfill_partition(src, args.instance), progress=True),
                           args.instance)
    except UnknownBackfillError as exc:
        raise NotFoundError(str(exc), backfill=args.instance) from None
    if args.json:
        print_json(view)
        return EXIT_OK
    print(f"{view['backfill']}  {view['workflow']}  {view['state']}  {view['done']}/{view['total']} done  "
          f"{view['succeeded']} succeeded  {view['failed']} failed  {view['running']} running "
          f"(parallel {view['parallel']}{', descending' if view['reverse'] else ''})")
    if view["dependents"]:
        print(f"dependents: {', '.join(view['dependents'])}")
    if view["halted"]:
        print(f"takes no further date: {view['halted']}")
    for instance in view["running_instances"]:
        print(f"  running {instance}")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add backfill."""
    from easysched_es.cli.queries import _seconds  # here: queries imports this module
    p = reg.add("backfill", cmd_backfill, "COMPLEMENT_DATA: run a workflow once per date of a range, as its "
                "schedule would have (prints the backfill id; `stop ID` stops it and what it started)",
                reg.as_json, requesting.options())
    p.add_argument("workflow", help="the workflow's name")
    p.add_argument("--from", dest="from_date", metavar="DATE",
                   help="first date, YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS' (in --timezone)")
    p.add_argument("--to", dest="to_date", metavar="DATE",
                   help="last date, inclusive (a bare date means the end of that day)")
    p.add_argument("--dates", metavar="D1,D2,...", help="these dates instead of --from/--to (comma-separated)")
    p.add_argument("--parallel", type=positive_int, default=None, metavar="N",
                   help="at most N dates in flight (RUN_MODE_PARALLEL; default 1)")
    p.add_argument("--serial", action="store_true", help="one date at a time (RUN_MODE_SERIAL, the default)")
    p.add_argument("--reverse", action="store_true", help="latest date first (DolphinScheduler's DESC_ORDER)")
    p.add_argument("--dependents", action="store_true",
                   help="also backfill, after each date, the workflows whose DEPENDENT tasks name this one")
    p.add_argument("--all-levels", action="store_true",
                   help="with --dependents: their dependents too, level by level (implies --dependents)")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a parameter for every instance (repeatable)")
    p.add_argument("--timezone", default=os.environ.get("EASYSCHED_TIMEZONE", ""), metavar="ZONE",
                   help="IANA zone of the dates given (default the workflow's schedule zone, else UTC)")
    p.add_argument("--wait", action="store_true",
                   help="follow it with a progress bar until it ends: exit 0 only if every date succeeded")
    p.add_argument("--wait-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="with --wait: give up after SECONDS with exit code 3 (the backfill goes on)")
