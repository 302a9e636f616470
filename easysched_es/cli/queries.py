"""Queries: status, timers, wait. They fold the log, so they work whether or not `run` runs.

(trace, replay, why and verify are in cli/debug.py.) They never create a data directory: on a
path that is not one they say so (exit 1). Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any

from easysched_es.cli import backfill
from easysched_es.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    NotFoundError,
    Registrar,
    UsageError,
    WaitTimeout,
    note,
    partition_of,
    print_json,
    source,
    source_used,
)


def unknown_instance(instance: str, why: str | None = None) -> NotFoundError:
    """The error for an instance id that no partition knows (or that the filters leave out)."""
    return NotFoundError(f"unknown instance {instance!r}" + (f" ({why})" if why else ""), instance=instance)


def cmd_status(args: argparse.Namespace) -> int:
    from easysched_es.debug.views import status_view
    from easysched_es.debug.waits import annotate_status
    from easysched_es.runtime.fold import load_state, load_states
    from easysched_es.runtime.gc_pause import gc_paused

    args.instance = args.instance or args.instance_opt
    if backfill.is_backfill(args.instance):
        return backfill.show_status(args)
    src = source(args)
    filters = {"workflow": args.workflow, "state": args.state}
    state = None
    with gc_paused():
        if args.request_id is not None:
            return _status_of_request(args, load_states(src, progress=True), src)
        if args.instance is None:
            states = load_states(src, progress=True)
            view = annotate_status(status_view(states, **filters), states)
        else:
            partition = partition_of(args.instance)
            known = partition is not None and partition < src.partitions
            state = load_state(src, partition=partition, progress=True) if known else None
            view = status_view(state, args.instance, **filters) if state is not None else []
            view = annotate_status(view, state) if state is not None else view
    if args.since is not None or args.limit is not None:
        view = _narrowed(view, args)
    if args.instance and not view:
        shown = "no such instance" if state is None or args.instance not in state.instances else "filtered out"
        if state is not None and shown == "no such instance":
            shown = _retired_note(state, args.instance) or shown
        raise unknown_instance(args.instance, shown)
    from easysched_es.cli.status_columns import add_task_columns, print_status

    view = add_task_columns(view, states if args.instance is None else state)
    used = say_source(src)
    if args.json:
        print_json({**view[0], "source": used} if args.instance else view)
        return EXIT_OK
    print_status(view)
    if not view:
        print("no instances")
    return EXIT_OK


def _retired_note(state: Any, instance: str) -> str | None:
    from easysched_es.core.retention import retired

    gone = retired(state, instance)
    if gone is None:
        return None
    return (f"it ended {gone[1].state} and retention removed it from the hot state "
            f"(retention_days of {gone[0]}); `easysched trace {instance}` reads it from the log")


def say_source(src: object) -> dict[str, Any]:
    """What a query on Kafka answered from, said on stderr (one line); returned for `--json`'s `source` field."""
    used = source_used(src)
    if used.get("kind") == "snapshot+tail":
        parts = "; ".join(
            f"p{row['partition']} " + ("no snapshot" if row["snapshot_position"] is None
                                       else f"snapshot at {row['snapshot_position']}")
            + (f", commands to {row['tail_end']}" if row.get("tail_end") is not None else "")
            for row in used["partitions"])
        note(f"answered from the masters' snapshots and the commands after them ({parts})")
    return used


def _narrowed(view: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    from easysched_es.debug.status_filters import narrow, parse_since
    from easysched_es.runtime.clock import wall_ms

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    try:
        since = None if args.since is None else parse_since(args.since, wall_ms())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return narrow(view, since, args.limit)


def _status_of_request(args: argparse.Namespace, states: list[Any], src: object) -> int:
    """`status --request-id ID`: what the fold decided for a request, and its instance's status."""
    from easysched_es.core.requests import MAX_REQUESTS, REQUEST_WINDOW_MS
    from easysched_es.debug.views import status_view

    found = [(s.partition, s.requests[args.request_id]) for s in states if args.request_id in s.requests]
    if not found:
        raise NotFoundError(
            f"no partition remembers request id {args.request_id!r}: not decided yet (is a master running?), "
            f"never sent, or forgotten (ids are kept {REQUEST_WINDOW_MS // 3_600_000} h, at most "
            f"{MAX_REQUESTS} per partition)", request_id=args.request_id)
    partition, first = found[0]
    decision = {"request_id": args.request_id, "command": first.command, "partition": partition,
                "offset": first.offset, "accepted": not first.rejected, "reason": first.rejected or None,
                "instance": first.instance or None}
    view = []
    if first.instance:
        owner = next((s for s in states if first.instance in s.instances), None)
        view = status_view(owner, first.instance) if owner is not None else []
    if args.json:
        print_json({**decision, "status": view[0] if view else None, "source": source_used(src)})
    else:
        verdict = "accepted" if not first.rejected else f"rejected: {first.rejected}"
        print(f"request {args.request_id}: {first.command} at partition {partition} offset {first.offset}, {verdict}")
        for inst in view:
            print(f"{inst['instance']:<12} {inst['workflow']:<24} {inst['state']}")
    return EXIT_OK if not first.rejected else EXIT_FAILED


def cmd_timers(args: argparse.Namespace) -> int:
    from easysched_es.debug.views import timers_view
    from easysched_es.debug.waits import waits_view
    from easysched_es.runtime.fold import load_states

    src = source(args)
    states = load_states(src, progress=True)
    view = timers_view(states)
    waits = waits_view(states)
    say_source(src)
    if args.json:
        # Waits have no due time: they end when capacity frees (kind SLOT_WAIT or SERIAL_WAIT).
        print_json(view + [{"instance": w["instance"], "task": w["task"], "kind": w["kind"], "due": None,
                            "due_ms": None, "waiting_for": w["waiting_for"]} for w in waits])
    else:
        for t in view:
            print(f"{t['due']}  {t['kind']:<16} {t['instance']:<12} {t['task']}")
        if not view:
            print("the delay queue is empty")
        for w in waits:
            print(f"{'(when capacity frees)':<24}  {w['kind']:<16} {w['instance']:<12} {w['task'] or ''}  "
                  f"{w['waiting_for']}")
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    from easysched_es.query_verbs import UnknownInstanceError, WaitTimeoutError, wait_for_end

    try:
        final = wait_for_end(source(args), args.instance, args.timeout)
    except UnknownInstanceError:
        raise unknown_instance(args.instance) from None
    except WaitTimeoutError as exc:
        raise WaitTimeout(str(exc), instance=args.instance, state=exc.state) from None
    if args.json:
        print_json(final)
    else:
        print(f"{args.instance} {final['state']}")
    return EXIT_OK if final["state"] == "SUCCESS" else EXIT_FAILED


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def register(reg: Registrar) -> None:
    """Add status, timers and wait."""
    p = reg.add("status", cmd_status, "instances and their tasks, folded from the log", reg.as_json)
    p.add_argument("instance", nargs="?",
                   help="one instance id (P-N), or a backfill id (P-N-backfill: done/total); default every instance")
    p.add_argument("--instance", dest="instance_opt", metavar="INSTANCE", help="the same as the positional INSTANCE")
    p.add_argument("--request-id", metavar="ID",
                   help="what was decided for the request with this id (printed by start, stop, ...) and its instance")
    p.add_argument("--workflow", help="only instances of this workflow")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="only instances in this state (repeatable), e.g. --state FAILURE --state STOP")
    p.add_argument("--since", metavar="WHEN",
                   help="only instances started since WHEN: a duration ago (30m, 12h, 1d, 2w) or an ISO-8601 time")
    p.add_argument("--limit", type=int, metavar="N", help="at most N instances, the newest first")
    reg.add("timers", cmd_timers, "every pending delay-queue entry, as the state holds it", reg.as_json)
    text = "wait until an instance ends: exit 0 on SUCCESS, 1 on another final state, 3 on --timeout"
    p = reg.add("wait", cmd_wait, text, reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="give up after this many seconds with exit code 3 (default: wait forever)")
