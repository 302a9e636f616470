"""`easysched logs INSTANCE TASK [--attempt N] [--follow]`: a task attempt's output.

Where the log is comes from the log itself: the worker reports it with the attempt's
`task_started` (`log_path`), so this works for the embedded runtime and for a Kafka worker on
the same machine; a log on another machine is named, not guessed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from easysched_es.cli.common import EXIT_OK, NotFoundError, Registrar, positive_int, print_json, source


def attempt_logs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """Every started attempt of the task, oldest first: {attempt, log_path, worker, time}; and the state."""
    from easysched_es.debug.trace import trace_with_state

    entries, state = trace_with_state(source(args), args.instance, args.task)
    inst = state.instances.get(args.instance) if state is not None else None
    if inst is None:
        raise NotFoundError(f"unknown instance {args.instance!r}", instance=args.instance)
    if args.task not in inst.tasks and not any(t.name == args.task for t in _defined_tasks(state, inst)):
        raise NotFoundError(f"instance {args.instance!r} has no task {args.task!r}",
                            instance=args.instance, task=args.task)
    attempts = [
        {"attempt": e["data"].get("attempt"), "log_path": e["data"].get("log_path") or None,
         "worker": e["data"].get("worker"), "time": e["time"]}
        for e in entries
        if e["kind"] == "command" and e["type"] == "task_started" and (e["data"] or {}).get("task") == args.task
    ]
    return attempts, inst


def _defined_tasks(state: Any, inst: Any) -> list[Any]:
    entry = state.workflows.get(inst.workflow)
    if entry is None or not 0 < inst.version <= len(entry.versions):
        return []
    return list(entry.versions[inst.version - 1].definition.tasks)


def cmd_logs(args: argparse.Namespace) -> int:
    attempts, inst = attempt_logs(args)
    task = inst.tasks.get(args.task)
    if not attempts:
        state = task.state if task is not None else "not yet submitted"
        raise NotFoundError(f"task {args.task!r} of {args.instance} has no attempt that started yet ({state})",
                            instance=args.instance, task=args.task, state=state)
    chosen = attempts[-1] if args.attempt is None else next(
        (a for a in attempts if a["attempt"] == args.attempt), None)
    if chosen is None:
        have = ", ".join(str(a["attempt"]) for a in attempts)
        raise NotFoundError(f"task {args.task!r} of {args.instance} has no attempt {args.attempt} (started: {have})",
                            instance=args.instance, task=args.task, attempt=args.attempt)
    path = Path(chosen["log_path"]) if chosen["log_path"] else None
    if path is None or not path.is_file():
        where = f"{path} on worker {chosen['worker']}" if path else f"worker {chosen['worker']} reported no log path"
        raise NotFoundError(f"the log of attempt {chosen['attempt']} is not on this machine ({where})",
                            instance=args.instance, task=args.task, attempt=chosen["attempt"],
                            log_path=chosen["log_path"])
    if args.json:
        text = path.read_text(errors="replace")
        print_json({**chosen, "instance": args.instance, "task": args.task, "text": text})
        return EXIT_OK
    with path.open("rb") as f:
        _copy(f)
        if args.follow:
            _follow(f, args, chosen["attempt"])
    return EXIT_OK


def _copy(f: Any) -> bool:
    chunk = f.read()
    if chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return bool(chunk)


def _follow(f: Any, args: argparse.Namespace, attempt: int) -> None:
    """Print what the attempt writes until it ends (Ctrl-C stops following earlier)."""
    from easysched_es.runtime.fold import load_state

    src = source(args)
    partition = int(args.instance.partition("-")[0])
    while True:
        if _copy(f):
            continue
        task = load_state(src, partition=partition).instances[args.instance].tasks.get(args.task)
        if task is None or task.attempt != attempt or task.state not in ("RUNNING_EXECUTION", "DISPATCH",
                                                                          "SUBMITTED_SUCCESS"):
            _copy(f)  # what it wrote last
            return
        time.sleep(0.5)


def register(reg: Registrar) -> None:
    """Add `logs`."""
    p = reg.add("logs", cmd_logs, "the output of a task attempt (default: the latest)", reg.as_json)
    p.add_argument("instance", help="the instance id (P-N)")
    p.add_argument("task", help="the task's name")
    p.add_argument("--attempt", type=positive_int, metavar="N", help="this attempt (1, 2, ...); default the latest")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing what the attempt writes until it ends")
