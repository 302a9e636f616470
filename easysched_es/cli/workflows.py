"""Commands that change state: define, start, stop, pause, resume, kill-task."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from easysched_es.cli import requesting
from easysched_es.cli.common import EXIT_OK, Handler, Registrar, client, parse_params, parse_time, print_json
from easysched_es.cli.defining import define_once, defined_now


def cmd_define(args: argparse.Namespace) -> int:
    from easysched_es.flows import load_flow, load_schedule

    # All or nothing: every file is read and validated before the first one is defined.
    definitions = [(path, load_flow(path)) for path in args.files]
    schedules = {path: load_schedule(path) for path in args.files}
    target = client(args)
    current = defined_now(args)
    results = []
    for path, definition in definitions:
        version, unchanged = define_once(target, definition, not args.offline, current)
        results.append({"file": path, "workflow": definition.name, "version": version, "unchanged": unchanged})
        if not args.json:
            state = "OFFLINE" if args.offline else "ONLINE"
            print(f"{definition.name} unchanged, still version {version} ({state})" if unchanged
                  else f"defined {definition.name} version {version} ({state})")
        schedule = schedules[path]  # the file's `schedule:` block, as `schedule set` would
        if schedule is not None:
            target._submit_schedule(schedule)
            results[-1]["schedule"] = schedule.cron
            if not args.json:
                print(f"scheduled {definition.name}: {schedule.cron!r} in {schedule.timezone}")
    if args.json:
        print_json(results)
    return EXIT_OK


def _note_pending(target: object) -> None:
    """Say on stderr when no master runs: the command is durable but waits for `easysched run`."""
    data = getattr(target, "data", None)
    if data is not None:
        from easysched_es.runtime.embedded.verdicts import PENDING_NOTE, master_pid

        if master_pid(data) is None:
            print("note: " + PENDING_NOTE.format(root=data.root), file=sys.stderr)


def cmd_start(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    target = client(args)
    requesting.prepare(args, target)
    rid = requesting.request_id(args)
    if args.no_wait:
        from easysched_es.core import commands as c

        command = c.StartWorkflow(workflow=args.workflow, params=params, schedule_time=parse_time(args.schedule_time),
                                  request_id=rid, timezone=args.timezone, from_tasks=args.from_task, scope=args.scope)
        return requesting.no_wait(args, target, command)
    with requesting.undecided_names_the_request(args):
        instance = target.start(args.workflow, params, parse_time(args.schedule_time), request_id=rid,
                                timezone=args.timezone, from_tasks=args.from_task, scope=args.scope)
    _note_pending(target)
    if args.json:
        print_json({"instance": instance, "request_id": rid})
    else:
        print(instance)
    return EXIT_OK


def _simple(method: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        target = client(args)
        requesting.prepare(args, target)
        rid = requesting.request_id(args)
        extra = [args.task] if method == "kill_task" else []
        if args.no_wait:
            from easysched_es.core import commands as c

            kinds = {"stop": c.StopWorkflow, "pause": c.PauseWorkflow, "resume": c.ResumeWorkflow}
            command: Any = (c.KillTask(instance=args.instance, task=args.task, request_id=rid) if extra
                                  else kinds[method](instance=args.instance, request_id=rid))
            return requesting.no_wait(args, target, command)
        with requesting.undecided_names_the_request(args):
            verdict = getattr(target, method)(args.instance, *extra, request_id=rid)
        _note_pending(target)
        if args.json:
            print_json({"instance": args.instance, "offset": verdict.offset, "accepted": True, "request_id": rid})
        else:
            print(
                f"{method.replace('_', '-')} {args.instance}{' ' + args.task if extra else ''}: accepted "
                f"(offset {verdict.offset})"
            )
        return EXIT_OK

    return handler


_REQ = requesting.options()


def register(reg: Registrar) -> None:
    """Add define, start, stop, pause, resume and kill-task."""
    p = reg.add("define", cmd_define, "define and release workflows from YAML files", reg.as_json)
    p.add_argument("files", nargs="+", metavar="FILE", help="workflow YAML files")
    p.add_argument("--offline", action="store_true", help="define without releasing (cannot be started)")

    p = reg.add("start", cmd_start, "start an instance of a workflow; prints the instance id", reg.as_json, _REQ)
    p.add_argument("workflow", help="the workflow's name")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a parameter (repeatable)")
    p.add_argument("--schedule-time", help="the instance's schedule time (ISO-8601 with zone); base of date windows")
    p.add_argument("--timezone", default=os.environ.get("EASYSCHED_TIMEZONE", ""), metavar="ZONE",
                   help="IANA zone of DS_DATE and the time parameters, e.g. Asia/Shanghai "
                   "(env EASYSCHED_TIMEZONE; default the workflow's schedule zone, else UTC)")
    p.add_argument("--from-task", action="append", default=[], metavar="TASK",
                   help="start from this task (repeatable; DolphinScheduler's start nodes)")
    p.add_argument("--scope", choices=("post", "pre", "task"), default="post",
                   help="with --from-task: post = it and its downstream (TASK_POST, default), pre = it and its "
                   "upstream (TASK_PRE), task = it alone (TASK_ONLY)")

    for name, method, text in (
        ("stop", "stop", "stop an instance: kill every active task (a backfill id: the backfill and its instances)"),
        ("pause", "pause", "pause an instance: dispatch nothing new, let running tasks finish"),
        ("resume", "resume", "resume a paused instance"),
    ):
        p = reg.add(name, _simple(method), text, reg.as_json, _REQ)
        p.add_argument("instance", help="the instance id (P-N)")
    p = reg.add("kill-task", _simple("kill_task"), "kill one task of an instance (never retried)", reg.as_json,
                _REQ)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("task", help="the task's name")
