"""Queries: status, timers, trace, replay, verify, wait. They fold the log, so they work whether or not `run` runs."""

from __future__ import annotations

import argparse
import sys
import time

from easysched_es.cli.common import EXIT_FAILED, EXIT_OK, Registrar, partition_of, print_json, source
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.debug.views import iso, status_view, timers_view
from easysched_es.runtime.fold import fold_stream, load_state, load_states, start_state


def cmd_status(args: argparse.Namespace) -> int:
    src = source(args)
    if args.instance is None:
        view = status_view(load_states(source, progress=True))
    else:
        partition = partition_of(args.instance)
        known = partition is not None and partition < src.partitions
        view = status_view(load_state(src, partition=partition, progress=True), args.instance) if known else []
    if args.instance and not view:
        print(f"unknown instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json(view[0] if args.instance else view)
        return EXIT_OK
    for inst in view:
        print(f"{inst['instance']:<12} {inst['workflow']:<24} {inst['state']}")
        for t in inst["tasks"]:
            pending = " (process not yet confirmed gone)" if t["kill_pending"] else ""
            print(f"    {t['name']:<24} {t['type']:<10} {t['state']:<20} attempt {t['attempt']}{pending}")
    if not view:
        print("no instances")
    return EXIT_OK


def cmd_timers(args: argparse.Namespace) -> int:
    view = timers_view(load_states(source(args), progress=True))
    if args.json:
        print_json(view)
    else:
        for t in view:
            print(f"{t['due']}  {t['kind']:<16} {t['instance']:<12} {t['task']}")
        if not view:
            print("the delay queue is empty")
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    entries = trace(source(args), args.instance, args.task)
    if not entries:
        print(f"nothing in the log touched instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
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


def cmd_replay(args: argparse.Namespace) -> int:
    state = load_state(source(args), partition=args.partition, until=args.until, progress=True)
    result = {
        "partition": args.partition,
        "until": args.until,
        "last_offset": state.last_offset,
        "now": iso(state.now),
        "instances": status_view(state),
        "timers": timers_view(state),
    }
    if args.json:
        print_json(result)
        return EXIT_OK
    print(f"state of partition {args.partition} as of offset {state.last_offset} (time {iso(state.now)}):")
    for inst in result["instances"]:
        tasks = ", ".join(f"{t['name']}={t['state']}" for t in inst["tasks"])
        print(f"  {inst['instance']:<12} {inst['workflow']:<20} {inst['state']:<18} {tasks}")
    for t in result["timers"]:
        print(f"  timer {t['kind']} {t['instance']}/{t['task']} due {t['due']}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify(source(args))
    result = {
        "ok": report.ok,
        "partitions": report.partitions,
        "commands": report.commands,
        "verified": report.verified,
        "undecided": report.undecided,
        "divergence": report.divergence,
    }
    if args.json:
        print_json(result)
    elif report.ok:
        print(f"ok: {report.verified} recorded batches equal the replay ({report.undecided} commands not decided yet)")
    else:
        where = report.divergence or {}
        print(f"DIVERGENCE in partition {where.get('partition')} at offset {where.get('offset')}")
        print_json(report.divergence)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    src = source(args)
    partition = partition_of(args.instance)
    if partition is None or partition >= src.partitions:
        print(f"unknown instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
    folded = start_state(src, partition)
    with src.commands() as commands:
        while True:
            fold_stream(commands, folded, partition=partition)
            view = status_view(folded, args.instance)
            if not view:
                print(f"unknown instance {args.instance!r}", file=sys.stderr)
                return EXIT_FAILED
            state = view[0]["state"]
            if state in ("SUCCESS", "FAILURE", "STOP", "PAUSE"):
                if args.json:
                    print_json(view[0])
                else:
                    print(f"{args.instance} {state}")
                return EXIT_OK if state == "SUCCESS" else EXIT_FAILED
            if time.monotonic() > deadline:
                print(f"{args.instance} still {state} after {args.timeout}s", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.1)


def register(reg: Registrar) -> None:
    """Add status, timers, trace, replay, verify and wait."""
    p = reg.add("status", cmd_status, "instances and their tasks, folded from the log", reg.as_json)
    p.add_argument("instance", nargs="?", help="one instance id (P-N); default every instance")
    reg.add("timers", cmd_timers, "every pending delay-queue entry, as the state holds it", reg.as_json)
    p = reg.add("trace", cmd_trace, "every command and event that touched an instance, in log order", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("--task", help="only what touched this task (and the instance as a whole)")
    p = reg.add("replay", cmd_replay, "the state of one partition as of a command offset", reg.as_json)
    p.add_argument("--until", type=int, required=True, metavar="OFFSET",
                   help="the last command offset to apply, in the partition given by --partition")
    p.add_argument("--partition", type=int, default=0, metavar="P",
                   help="the partition to replay (Kafka: an instance 'P-N' lives in partition P; "
                   "the embedded log has only 0; default 0)")
    reg.add("verify", cmd_verify, "replay the whole log and compare with the recorded events", reg.as_json)
    p = reg.add("wait", cmd_wait, "wait until an instance ends (exit 0 on SUCCESS, 1 otherwise)", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
