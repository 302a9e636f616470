"""What `status` shows of each task: the ones not yet submitted, a reason for each state, exit code, times.

The capacity filters and `waiting_for` are added by `debug/waits.py`; this module adds the
rest of what a person asks of a task ("why is it in this state?") and prints the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NOT_SUBMITTED = "NOT_SUBMITTED"


def add_task_columns(view: list[dict[str, Any]], states: Any) -> list[dict[str, Any]]:
    """Add the definition's tasks that are not submitted yet, and a `reason` to every task."""
    from easysched_es.core.definitions import task_type
    from easysched_es.core.state import State

    each: Iterable[State] = [states] if isinstance(states, State) else states
    by_id = {i: s for s in each for i in s.instances}
    for inst in view:
        state = by_id.get(inst["instance"])
        known = {t["name"] for t in inst["tasks"]}
        for task in _definition_tasks(state, inst):
            if task.name not in known:
                waiting = [u for u in task.upstream if u not in known] or list(task.upstream)
                inst["tasks"].append({
                    "name": task.name, "type": task_type(task), "state": NOT_SUBMITTED, "attempt": 0,
                    "started_at": None, "ended_at": None, "exit_code": None, "worker": None, "pid": None,
                    "kill_pending": False,
                    "reason": (f"waits for upstream {', '.join(waiting)}" if waiting else "not submitted yet"),
                })
        for t in inst["tasks"]:
            t.setdefault("reason", _reason(t, inst))
    return view


def _definition_tasks(state: Any, inst: dict[str, Any]) -> list[Any]:
    entry = state.workflows.get(inst["workflow"]) if state is not None else None
    version = inst.get("version")
    if entry is None or not isinstance(version, int) or not 0 < version <= len(entry.versions):
        return []
    return list(entry.versions[version - 1].definition.tasks)


def _reason(t: dict[str, Any], inst: dict[str, Any]) -> str | None:
    """A short why for the task's state, from what the state holds (`easysched why` tells the whole chain)."""
    if t.get("waiting_for"):
        return str(t["waiting_for"])
    if t.get("note"):
        return str(t["note"])
    state, code = t["state"], t.get("exit_code")
    if t.get("kill_pending"):
        return "killed; the process is not yet confirmed gone"
    if state == "FAILURE" and code is not None:
        return f"exit code {code}"
    if state == "SUCCESS" and code is not None:
        return f"exit code {code}"
    if state == "KILL":
        return "killed" + (f" by {inst['state'].lower()}" if inst["state"] in ("STOP", "READY_STOP") else "")
    if state == "DISPATCH":
        return "dispatched; waiting for a worker to start it (is `easysched run` or a worker running?)"
    if state == "RUNNING_EXECUTION" and t.get("pid"):
        return f"running as pid {t['pid']}" + (f" on {t['worker']}" if t.get("worker") else "")
    return None


def print_status(view: list[dict[str, Any]]) -> None:
    """The human `status`: one block per instance, a table of its tasks."""
    from easysched_es.cli.tables import print_table

    for inst in view:
        waits = f" ({inst['waiting_for']})" if "waiting_for" in inst else ""
        times = f"started {_short(inst.get('started_at'))}" + (
            f", ended {_short(inst['ended_at'])}" if inst.get("ended_at") else "")
        zone = f", {inst['timezone']}" if inst.get("timezone", "UTC") != "UTC" else ""
        # Who started it, when not a user's start: SCHEDULER or COMPLEMENT_DATA (and which backfill).
        kind = inst.get("command_type", "START_PROCESS")
        by = "" if kind == "START_PROCESS" else f", {kind}" + (
            f" {inst['backfill']}" if inst.get("backfill") else "") + (
            f" for {_short(inst['schedule_time'])}" if inst.get("schedule_time") else "")
        print(f"{inst['instance']}  {inst['workflow']} v{inst.get('version', '?')}  {inst['state']}{waits}  "
              f"({times}{zone}{by})")
        print_table(["task", "type", "state", "attempt", "exit", "started", "ended", "reason"], [
            [t["name"], t["type"], t["state"], t["attempt"] or "", "" if t.get("exit_code") is None else t["exit_code"],
             _short(t.get("started_at")), _short(t.get("ended_at")), t.get("reason") or ""]
            for t in inst["tasks"]], indent=4)


def _short(iso: str | None) -> str:
    """'2026-12-01T13:32:09.183Z' as '2026-12-01 13:32:09' (UTC, like the rest of the CLI)."""
    return "" if not iso else iso.replace("T", " ")[:19]
