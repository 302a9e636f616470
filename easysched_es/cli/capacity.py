"""`easysched pool set|delete|list` (named pools of slots shared across workflows, Airflow pools)
and `easysched gc` (retention now; `easysched run` applies it hourly on its own)."""

from __future__ import annotations

import argparse

from easysched_es.cli.common import (
    EXIT_OK,
    Registrar,
    UsageError,
    client,
    non_negative_int,
    non_negative_number,
    print_json,
    source,
)


def cmd_pool(args: argparse.Namespace) -> int:
    from easysched_es.debug.waits import pools_view
    from easysched_es.runtime.fold import load_states

    if args.action == "list":
        view = pools_view(load_states(source(args)))
        if args.json:
            print_json(view)
        else:
            for row in view:
                print(f"{row['name']:<32} {row['busy']:>5} of {row['slots']:<5} busy, {row['waiting']} waiting")
            if not view:
                print("no pools and no announced worker slots (nothing is limited)")
        return EXIT_OK
    if not args.name:
        raise UsageError(f"pool {args.action} needs a NAME")
    if args.action == "set":
        if args.slots is None or args.slots < 0:
            raise UsageError("pool set needs --slots N (N >= 0)")
        slots = args.slots
    else:
        slots = -1
    verdicts = client(args).set_pool(args.name, slots)
    if args.json:
        print_json({"pool": args.name, "slots": slots, "offsets": [v.offset for v in verdicts], "accepted": True})
    else:
        done = "deleted" if slots < 0 else f"set to {slots} slots"
        print(f"pool {args.name} {done} (offset {', '.join(str(v.offset) for v in verdicts)})")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from easysched_es.cli.common import data
    from easysched_es.runtime.embedded.gc import gc

    report = gc(data(args), dry_run=args.dry_run, keep_days=args.keep_days, keep_bytes=args.keep_bytes,
                ignore_projection=args.ignore_projection)
    if args.json:
        print_json(report)
        return EXIT_OK
    verb = "would retire" if args.dry_run else "retired"
    print(f"{verb} {len(report['instances'])} finished instances; "
          f"{'would remove' if args.dry_run else 'removed'} {len(report['directories'])} log/run directories")
    log = report["log"]
    for seg in log["segments"]:
        print(f"{'would delete' if args.dry_run else 'deleted'} log segment {seg}")
    first = ", ".join(f"{k} from offset {v}" for k, v in log["kept_from"].items())
    print(f"log: {len(log['segments'])} old segments ({log['bytes']} bytes) "
          f"{'would be deleted' if args.dry_run else 'deleted'}{'; kept: ' + first if first else ''}"
          f"{'; ' + log['reason'] if log['reason'] else ''}")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add `pool` and `gc`."""
    p = reg.add("gc", cmd_gc, "apply the retention policy now: retire old finished instances, remove their files",
                reg.as_json)
    p.add_argument("--dry-run", action="store_true", help="say what would be retired and removed; change nothing")
    p.add_argument("--keep-days", type=non_negative_number, metavar="DAYS",
                   help="keep log segments written within DAYS (default $EASYSCHED_LOG_KEEP_DAYS, else 30)")
    p.add_argument("--keep-bytes", type=non_negative_int, metavar="BYTES",
                   help="keep the newest BYTES of each log stream (default $EASYSCHED_LOG_KEEP_BYTES, else 0)")
    p.add_argument("--ignore-projection", action="store_true",
                   help="delete old segments even if the DuckDB projection has not read them yet")
    p = reg.add("pool", cmd_pool, "named pools of task slots shared across workflows: set, delete, list", reg.as_json)
    p.add_argument("action", choices=["set", "delete", "list"], help="set a pool's slots, delete it, or list pools")
    p.add_argument("name", nargs="?", help="the pool's name (for set and delete)")
    p.add_argument("--slots", type=int, help="how many tasks of the pool run at a time (for set)")
