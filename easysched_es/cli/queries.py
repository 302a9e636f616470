"""Queries: status, timers, wait. They fold the log, so they work whether or not `run` runs.

(trace, replay, why and verify are in cli/debug.py.)
"""

from __future__ import annotations

import argparse
import sys
import time

from easysched_es.cli.common import EXIT_FAILED, EXIT_OK, Registrar, partition_of, print_json, source
from easysched_es.debug.views import status_view, timers_view
from easysched_es.runtime.fold import fold_through, load_state, load_states, start_state
from easysched_es.runtime.gc_pause import gc_paused


def cmd_status(args: argparse.Namespace) -> int:
    src = source(args)
    args.instance = args.instance or args.instance_opt
    filters = {"workflow": args.workflow, "state": args.state}
    state = None
    with gc_paused():
        if args.instance is None:
            view = status_view(load_states(src, progress=True), **filters)
        else:
            partition = partition_of(args.instance)
            known = partition is not None and partition < src.partitions
            state = load_state(src, partition=partition, progress=True) if known else None
            view = status_view(state, args.instance, **filters) if state is not None else []
    if args.instance and not view:
        shown = "no such instance" if state is None or args.instance not in state.instances else "filtered out"
        print(f"unknown instance {args.instance!r} ({shown})", file=sys.stderr)
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
            fold_through(commands, folded, partition=partition)
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
    """Add status, timers and wait."""
    p = reg.add("status", cmd_status, "instances and their tasks, folded from the log", reg.as_json)
    p.add_argument("instance", nargs="?", help="one instance id (P-N); default every instance")
    p.add_argument("--instance", dest="instance_opt", metavar="INSTANCE", help="the same as the positional INSTANCE")
    p.add_argument("--workflow", help="only instances of this workflow")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="only instances in this state (repeatable), e.g. --state FAILURE --state STOP")
    reg.add("timers", cmd_timers, "every pending delay-queue entry, as the state holds it", reg.as_json)
    p = reg.add("wait", cmd_wait, "wait until an instance ends (exit 0 on SUCCESS, 1 otherwise)", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
