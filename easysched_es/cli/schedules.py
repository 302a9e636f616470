"""Schedules and release state: `release`, `offline`, `schedule set|online|offline|delete|list|trigger`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from easysched_es.cli.common import EXIT_OK, Registrar, UsageError, client, parse_params, print_json, source

if TYPE_CHECKING:
    from easysched_es.core.state import State

# The core, the fold and the zone data are imported by the handlers, not when the parser is
# built (every `easysched` call builds it; bench/cli.py). The overlap policies are named here
# for --help; tests/cli/test_help.py checks they are core.schedules' OVERLAP and DS_EXECUTION_TYPES.
OVERLAP_POLICIES = ("SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "ALLOW_ALL",
                    "PARALLEL", "SERIAL_WAIT", "SERIAL_DISCARD", "SERIAL_PRIORITY")


def _done(args: argparse.Namespace, what: str, verdict: Any, **extra: Any) -> int:
    offset = getattr(verdict, "offset", None)
    if args.json:
        print_json({"workflow": args.workflow, "accepted": True, "offset": offset, **extra})
    else:
        print(f"{what} {args.workflow}: accepted (offset {offset})")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    verdict = client(args).release(args.workflow, True)
    return _done(args, "release", verdict, online=True)


def cmd_offline(args: argparse.Namespace) -> int:
    verdict = client(args).release(args.workflow, False)
    return _done(args, "offline", verdict, online=False)


def cmd_set(args: argparse.Namespace) -> int:
    from easysched_es.schedule_times import parse_bound, parse_window

    try:
        window = parse_window(args.catchup_window)
        start = parse_bound(args.start, args.timezone)
        end = parse_bound(args.end, args.timezone, end=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    online = None if args.online is None else args.online == "online"
    verdict = client(args).set_schedule(args.workflow, args.cron, timezone=args.timezone, start=start, end=end,
                                        overlap=args.overlap, catchup_window=window, online=online,
                                        params=parse_params(args.param))
    return _done(args, "schedule set", verdict)


def _verb(method: str, what: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        return _done(args, what, getattr(client(args), method)(args.workflow))

    return handler


def schedules_view(states: list[State], now: int, count: int = 5) -> list[dict[str, Any]]:
    """Every schedule with its state and its next `count` fire times (merged over the partitions)."""
    from easysched_es.core.schedules import upcoming
    from easysched_es.debug.views import iso

    out = []
    for state in states:
        for s in state.schedules.values():
            out.append({
                "workflow": s.workflow, "cron": s.cron, "timezone": s.zone, "online": s.online,
                "overlap": s.overlap, "catchup_window_ms": s.catchup_window,
                "start": iso(s.start), "end": iso(s.end), "params": s.params,
                "pending_fire": iso(s.next_fire), "running": list(s.running), "buffered": [iso(t) for t in s.buffer],
                "next_fires": [iso(t) for t in upcoming(s, count, max(now, state.now))] if s.online else [],
                "partition": state.partition,
            })
    return sorted(out, key=lambda v: v["workflow"])


def cmd_list(args: argparse.Namespace) -> int:
    from easysched_es.runtime.clock import wall_ms
    from easysched_es.runtime.fold import load_states
    from easysched_es.runtime.gc_pause import gc_paused

    with gc_paused():
        view = schedules_view(load_states(source(args), progress=True), wall_ms(), args.count)
    if args.workflow:
        view = [v for v in view if v["workflow"] == args.workflow]
    if args.json:
        print_json(view)
        return EXIT_OK
    for v in view:
        state = "ONLINE" if v["online"] else "OFFLINE"
        print(f"{v['workflow']:<24} {state:<8} {v['cron']!r} {v['timezone']} overlap {v['overlap']}")
        for t in v["next_fires"]:
            print(f"    next {t}")
    if not view:
        print("no schedules")
    return EXIT_OK


def _needs_action(args: argparse.Namespace) -> int:
    raise UsageError("schedule needs an action: set, online, offline, delete, list or trigger")


def register(reg: Registrar) -> None:
    """Add release, offline and the schedule subcommands."""
    p = reg.add("release", cmd_release, "put a workflow ONLINE (it can be started, scheduled)",
                reg.as_json)
    p.add_argument("workflow", help="the workflow's name")
    p = reg.add("offline", cmd_offline, "put a workflow OFFLINE (its schedule goes OFFLINE too)",
                reg.as_json)
    p.add_argument("workflow", help="the workflow's name")

    sched = reg.add("schedule", _needs_action, "cron schedules: set, online, offline, delete, list, trigger")
    sub = sched.add_subparsers(dest="schedule_command", metavar="ACTION", required=True,
                               help="what to do with the schedule")
    sreg = Registrar(sub, reg.common, reg.as_json)
    policies = ", ".join(OVERLAP_POLICIES)
    p = sreg.add("set", cmd_set, "create or change a workflow's schedule", reg.as_json)
    p.add_argument("workflow", help="the workflow's name")
    p.add_argument("--cron", required=True, help="Quartz ('0 0 2 * * ? *') or 5-field cron ('0 2 * * *', @daily)")
    p.add_argument("--timezone", default="UTC", help="IANA zone the cron is read in (default UTC)")
    p.add_argument("--start", help="first day (ISO date, in the zone) or time the schedule may fire")
    p.add_argument("--end", help="last day (included) or time the schedule may fire")
    p.add_argument("--overlap", default="SKIP", help=f"when the previous fire still runs: {policies} (default SKIP)")
    p.add_argument("--catchup-window", default="latest",
                   help="missed fires that still run after downtime: latest (default), unlimited, or a duration (1d)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a parameter for every fire")
    p.add_argument("--state", dest="online", choices=("online", "offline"), default=None,
                   help="ONLINE or OFFLINE (default: a new schedule is online, a changed one keeps its state)")
    for name, method, text in (
        ("online", "schedule_online", "put a schedule ONLINE (fires from now on)"),
        ("offline", "schedule_offline", "put a schedule OFFLINE (its pending fire is removed)"),
        ("delete", "delete_schedule", "delete a schedule"),
        ("trigger", "trigger_schedule", "fire once now, as the schedule would"),
    ):
        p = sreg.add(name, _verb(method, f"schedule {name}"), text, reg.as_json)
        p.add_argument("workflow", help="the workflow's name")
    p = sreg.add("list", cmd_list, "every schedule, its state and its next fire times", reg.as_json)
    p.add_argument("workflow", nargs="?", help="only this workflow's schedule")
    p.add_argument("--count", type=int, default=5, help="how many next fire times to show (default 5)")
