"""Replay-based debugging: trace, replay (to an offset or a time), why, verify, snapshots.

Each folds from the nearest kept snapshot at or before the point it needs (`debug.replay`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easysched_es.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    NotFoundError,
    Registrar,
    UsageError,
    non_negative_int,
    print_json,
    source,
)

if TYPE_CHECKING:
    from easysched_es.runtime.fold import LogSource

# The debug modules, the log and the fold are imported inside the handlers: building the
# parser on every `easysched` call must stay cheap (bench/cli.py).


def parse_when(text: str) -> int:
    """`--at`: an ISO-8601 time with a zone (or epoch milliseconds) as epoch milliseconds."""
    from datetime import datetime

    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at expects an ISO-8601 time such as 2026-12-01T02:00:00Z, got {text!r}") from None
    if dt.tzinfo is None:
        raise UsageError(f"--at needs a time zone, e.g. {text}Z")
    return int(dt.timestamp() * 1000)


def cmd_trace(args: argparse.Namespace) -> int:
    from easysched_es.cli.queries import say_source
    from easysched_es.debug.trace import trace

    src = source(args)
    entries = trace(src, args.instance, args.task)
    say_source(src)
    if not entries:
        raise NotFoundError(f"nothing in the log touched instance {args.instance!r}", instance=args.instance)
    if args.task is not None and not any(_names_task(e, args.task) for e in entries):
        raise NotFoundError(f"instance {args.instance!r} has no task {args.task!r}",
                            instance=args.instance, task=args.task)
    if args.json:
        print_json(entries)
        return EXIT_OK
    for entry in entries:
        indent = "" if entry["kind"] == "command" else "    -> "
        data = entry["data"] or {}
        detail = " ".join(
            f"{k}={v}" for k, v in data.items() if k not in ("instance", "at", "type", "env", "definition")
        )
        print(f"{entry['offset']:>10} {entry['time']} {indent}{entry['type']} {detail}")
    return EXIT_OK


def _names_task(entry: dict[str, Any], task: str) -> bool:
    data = entry.get("data") or {}
    return bool(data.get("task") == task or data.get("name") == task)


def cmd_replay(args: argparse.Namespace) -> int:
    from easysched_es.debug.replay import replay
    from easysched_es.debug.views import iso, status_view, timers_view

    at = None if args.at is None else parse_when(args.at)
    if args.until is None and at is None:
        raise UsageError("replay needs --until OFFSET or --at TIME")
    done = replay(source(args), args.partition, until=args.until, at=at, progress=True)
    state = done.state
    instances = status_view(state, args.instance, workflow=args.workflow, state=args.state)
    filtered = args.instance is not None or args.workflow is not None or bool(args.state)
    ids = {i["instance"] for i in instances} if filtered else None
    result: dict[str, Any] = {
        "partition": args.partition,
        "until": args.until,
        "at": args.at,
        "last_offset": state.last_offset,
        "now": iso(state.now),
        "started_from_snapshot": done.snapshot,
        "folded_commands": done.folded,
        "note": done.note,
        "instances": instances,
        "timers": timers_view(state, ids),
    }
    if args.json:
        print_json(result)
        return EXIT_OK
    print(f"state of partition {args.partition} as of offset {state.last_offset} (time {iso(state.now)}):")
    print(f"  ({done.note}; {done.folded} commands folded)")
    for inst in result["instances"]:
        tasks = ", ".join(f"{t['name']}={t['state']}" for t in inst["tasks"])
        print(f"  {inst['instance']:<12} {inst['workflow']:<20} {inst['state']:<18} {tasks}")
    for t in result["timers"]:
        print(f"  timer {t['kind']} {t['instance']}/{t['task']} due {t['due']}")
    return EXIT_OK


def cmd_why(args: argparse.Namespace) -> int:
    from easysched_es.debug.why import why

    answer = why(source(args), args.instance, args.task)
    if answer is None:
        what = f"task {args.task!r} of instance {args.instance!r}" if args.task else f"instance {args.instance!r}"
        raise NotFoundError(f"unknown {what}: the log never started it", instance=args.instance)
    if args.json:
        print_json(answer)
        return EXIT_OK
    head = f"{answer['instance']}" + (f" {answer['task']}" if args.task else f" ({answer['workflow']})")
    print(f"{head}: {answer['state']}")
    print(f"  {answer['summary']}")
    for name, summary in answer.get("tasks", {}).items():
        print(f"  - {name}: {summary}")
    if args.task and answer["chain"]:
        print("chain (newest first):")
        for link in answer["chain"]:
            change = f" -> {link['state']}" if link["state"] else ""
            reason = f" ({link['reason']})" if link["reason"] else ""
            others = ", ".join(ev["type"] for ev in link["events"] if ev["type"] != "task_state")
            print(f"  {link['offset']:>10} {link['time']} {link['command']}{change}{reason}"
                  + (f"  [{others}]" if others else ""))
    return EXIT_OK


def _verify_source(args: argparse.Namespace) -> LogSource:
    from easysched_es.runtime.embedded.datadir import DataDir

    if args.log is None:
        return source(args)
    root = Path(args.log)
    if not (root / "commands").is_dir():
        raise CliError(f"{root} is not an easysched data directory (no commands/ in it); "
                       "give --log the copy of a production data directory", kind="no_data_dir", data_dir=str(root))
    return DataDir(root)


def cmd_verify(args: argparse.Namespace) -> int:
    from easysched_es.debug.verify import side_by_side, verify

    src = _verify_source(args)
    if args.from_snapshots:
        return _verify_snapshots(args, src)
    report = verify(src, since=args.since)
    result = {
        "ok": report.ok,
        "partitions": report.partitions,
        "commands": report.commands,
        "verified": report.verified,
        "undecided": report.undecided,
        "started_from": report.started_from,
        "notes": report.notes,
        "divergence": report.divergence,
    }
    if args.json:
        print_json(result)
    elif report.ok:
        for note in report.notes:
            print(note)
        print(f"ok: {report.verified} recorded batches equal the replay ({report.undecided} commands not decided yet)")
    else:
        div = report.divergence or {}
        print(f"DIVERGENCE in partition {div.get('partition')} at offset {div.get('offset')} "
              f"(command {div.get('command')}): {div.get('reason')}")
        if "side_by_side" in div:
            print("\n".join(side_by_side(div)))
        else:
            print_json(div)
    return EXIT_OK if report.ok else EXIT_FAILED


def _verify_snapshots(args: argparse.Namespace, src: LogSource) -> int:
    from easysched_es.debug.verify import verify_snapshots

    checks = verify_snapshots(src)
    ok = all(c.ok for c in checks)
    if args.json:
        print_json({"ok": ok, "snapshots": [{"offset": c.offset, "ok": c.ok, "detail": c.detail} for c in checks]})
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'BAD '} snapshot at offset {c.offset}" + (f": {c.detail}" if c.detail else ""))
        print(f"{sum(c.ok for c in checks)} of {len(checks)} kept snapshots equal the replay")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_snapshots(args: argparse.Namespace) -> int:
    from easysched_es.debug.replay import build_index
    from easysched_es.debug.views import iso

    src = source(args)
    get = getattr(src, "snapshot_store", None)
    if not callable(get):
        raise CliError("snapshot listing needs the embedded log (Kafka keeps only the newest snapshot per partition)")
    written = build_index(src, args.every) if args.build else []
    metas = [
        {"offset": m.offset, "now": iso(m.now), "bytes": m.bytes, "instances": m.instances} for m in get().metas()
    ]
    if args.json:
        print_json({"written": written, "kept": metas})
        return EXIT_OK
    if args.build:
        print(f"wrote {len(written)} snapshots; the index keeps {len(metas)}")
    for m in metas:
        print(f"  offset {m['offset']:>12}  {m['now']}  {m['instances']:>8} instances  {m['bytes']:>12,} bytes")
    if not metas:
        print("no snapshots: replays fold from the start of the log (`easysched snapshots --build` makes some)")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add trace, replay, why, verify and snapshots."""
    p = reg.add("trace", cmd_trace, "every command and event that touched an instance, in log order", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("--task", help="only what touched this task (and the instance as a whole)")

    p = reg.add("replay", cmd_replay, "the state of one partition as of a command offset or a wall time", reg.as_json)
    p.add_argument("--until", type=non_negative_int, metavar="OFFSET",
                   help="the last command offset to apply (0 or more), in the partition given by --partition")
    p.add_argument("--at", metavar="TIME",
                   help="the state as of this time (ISO-8601 with zone, or epoch ms): every command up to the last "
                   "one that keeps the state's clock at or before it")
    p.add_argument("--partition", type=non_negative_int, default=0, metavar="P",
                   help="the partition to replay (Kafka: an instance 'P-N' lives in partition P; "
                   "the embedded log has only 0; default 0)")
    p.add_argument("--instance", help="show only this instance (P-N)")
    p.add_argument("--workflow", help="show only instances of this workflow")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="show only instances in this state (repeatable), e.g. RUNNING_EXECUTION")

    p = reg.add("why", cmd_why, "the chain of decisions that put a task (or an instance) in its state", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("task", nargs="?", help="the task name; default the instance as a whole")

    p = reg.add("verify", cmd_verify, "replay the log with this version's code and compare with the recorded events "
                "(the upgrade check)", reg.as_json)
    p.add_argument("--log", metavar="DIR",
                   help="verify this data directory (a copy of production's) instead of --data-dir")
    p.add_argument("--since", type=int, metavar="OFFSET",
                   help="start from the nearest kept snapshot at or before OFFSET instead of offset 0")
    p.add_argument("--from-snapshots", action="store_true",
                   help="check that every kept snapshot equals the replay up to its offset")

    p = reg.add("snapshots", cmd_snapshots, "the sparse snapshot index that replays start from", reg.as_json)
    p.add_argument("--build", action="store_true",
                   help="fold the log once and write a snapshot every --every commands (the index thins them)")
    p.add_argument("--every", type=int, default=20_000, metavar="N",
                   help="commands between snapshots written by --build (default 20000)")
