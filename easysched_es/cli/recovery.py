"""`rerun`, `recover` and `force-success`: make a finished instance run again (core/recovery.py)."""

from __future__ import annotations

import argparse

from easysched_es.cli.common import EXIT_OK, Registrar, client, print_json


def _run(args: argparse.Namespace, method: str, *extra: str) -> int:
    from easysched_es.cli.workflows import _note_pending

    target = client(args)
    verdict = getattr(target, method)(args.instance, *extra)
    _note_pending(target)
    if args.json:
        print_json({"instance": args.instance, **({"task": extra[0]} if extra else {}), "offset": verdict.offset,
                    "accepted": True})
    else:
        print(f"{method.replace('_', '-')} {' '.join((args.instance, *extra))}: accepted (offset {verdict.offset})")
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    return _run(args, "rerun")


def cmd_recover(args: argparse.Namespace) -> int:
    return _run(args, "recover")


def cmd_force_success(args: argparse.Namespace) -> int:
    return _run(args, "force_success", args.task)


def register(reg: Registrar) -> None:
    """Add rerun, recover and force-success."""
    p = reg.add("rerun", cmd_rerun, "REPEAT_RUNNING: run every task of a finished instance again "
                "(attempt numbers go on)", reg.as_json)
    p.add_argument("instance", help="the finished instance's id (P-N)")
    p = reg.add("recover", cmd_recover, "START_FAILURE_TASK_PROCESS: re-run the tasks of a FAILURE or STOP instance "
                "that ended FAILURE, KILL or NEED_FAULT_TOLERANCE, and what follows them; successes are kept",
                reg.as_json)
    p.add_argument("instance", help="the failed or stopped instance's id (P-N)")
    p = reg.add("force-success", cmd_force_success, "mark a failed or killed task of a finished instance "
                "FORCED_SUCCESS, so that `recover` runs what follows it", reg.as_json)
    p.add_argument("instance", help="the finished instance's id (P-N)")
    p.add_argument("task", help="the task's name")
