"""`why`: the chain of decisions that put a task (or an instance) in its state.

Everything here is read off the fold's own events for the instance (the same fold `trace`
runs) and the state at the end of the log: which command's step set the current state, with
what reason, what else that same step did to the task (timers cancelled or set, a process
kill, a dispatch), and what is still pending for it in the delay queue. No guessing: a
sentence is only written when an event says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easysched_es.core import dependent as windows
from easysched_es.core.state import DELAY, State, TaskInstance, WorkflowInstance
from easysched_es.debug.trace import trace_with_state
from easysched_es.debug.views import iso
from easysched_es.runtime.fold import LogSource

# Events that say what a step did to a task, beside its state change.
_SIDE = ("timer_cancelled", "timer_set", "timer_fired", "kill_process", "dispatch", "attempt_claimed",
         "dependent_checked", "kill_confirmed", "late_report_ignored", "task_timed_out", "command_rejected")


@dataclass
class Step:
    """One command's step, with the events it caused for the instance (or task)."""

    offset: int
    time: str | None
    command: str
    data: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str, task: str | None = None) -> list[dict[str, Any]]:
        """The events of type `kind` (about `task`, if given)."""
        return [ev for ev in self.events if ev["type"] == kind and (task is None or ev["data"].get("task") == task)]

    def where(self) -> str:
        """`stop` at offset 9120 (2026-12-01T02:00:03Z)."""
        return f"`{self.command}` at offset {self.offset} ({self.time})"


def steps_of(entries: list[dict[str, Any]]) -> list[Step]:
    """Group trace entries by the command that caused them, in log order."""
    out: list[Step] = []
    for entry in entries:
        if entry["kind"] == "command":
            out.append(Step(entry["offset"], entry["time"], entry["type"], entry["data"]))
        elif out:
            out[-1].events.append({"type": entry["type"], "data": entry["data"]})
    return out


def why(source: LogSource, instance: str, task: str | None = None) -> dict[str, Any] | None:
    """The explanation of `instance` (or of one of its tasks), or None if the log never knew it."""
    entries, state = trace_with_state(source, instance, task)
    if state is None or instance not in state.instances:
        return None
    inst = state.instances[instance]
    steps = steps_of(entries)
    if task is None:
        return _why_instance(state, inst, steps)
    if task not in _task_names(state, inst):
        return None
    return _why_task(state, inst, task, steps)


def _task_names(state: State, inst: WorkflowInstance) -> list[str]:
    dv = state.workflows[inst.workflow].versions[inst.version - 1]
    return [t.name for t in dv.definition.tasks]


def _chain(steps: list[Step], task: str) -> list[dict[str, Any]]:
    """Every step that changed the task's state, newest first, with what else it did to the task."""
    chain = []
    for s in reversed(steps):
        changes = s.of("task_state", task)
        side = [ev for ev in s.events if ev["type"] in _SIDE and ev["data"].get("task") == task]
        if not changes and not side:
            continue
        chain.append(
            {
                "offset": s.offset,
                "time": s.time,
                "command": s.command,
                "state": changes[-1]["data"]["state"] if changes else None,
                "reason": changes[-1]["data"].get("reason", "") if changes else "",
                "events": [{"type": ev["type"], **ev["data"]} for ev in (*changes, *side)],
            }
        )
    return chain


def _pending(state: State, instance: str, task: str | None) -> list[dict[str, Any]]:
    return [
        {"task": t.task, "kind": t.kind, "due": iso(t.due)}
        for t in state.queue.entries()
        if t.instance == instance and (task is None or t.task == task)
    ]


def _why_task(state: State, inst: WorkflowInstance, task: str, steps: list[Step]) -> dict[str, Any]:
    ti = inst.tasks.get(task)
    pending = _pending(state, inst.id, task)
    chain = _chain(steps, task)
    result: dict[str, Any] = {
        "instance": inst.id,
        "task": task,
        "state": ti.state if ti else "NOT_SUBMITTED",
        "attempt": ti.attempt if ti else 0,
        "summary": "",
        "pending": pending,
        "chain": chain,
    }
    if ti is None:
        result["summary"] = _not_submitted(state, inst, task)
        return result
    last = next((s for s in reversed(steps) if any(ev["data"]["state"] == ti.state for ev in s.of("task_state", task))),
                None)
    result["summary"] = _task_summary(state, inst, ti, last, steps, pending)
    return result


def _not_submitted(state: State, inst: WorkflowInstance, task: str) -> str:
    dv = state.workflows[inst.workflow].versions[inst.version - 1]
    ups = dv.task(task).upstream
    waiting = [f"`{u}` is {inst.tasks[u].state if u in inst.tasks else 'not submitted'}" for u in ups]
    head = f"not submitted: the instance is {inst.state}"
    return head + (f"; upstream {', '.join(waiting)}" if waiting else "")


def _task_summary(
    state: State, inst: WorkflowInstance, ti: TaskInstance, last: Step | None, steps: list[Step],
    pending: list[dict[str, Any]],
) -> str:
    if last is None:
        return f"{ti.state}: no step in the kept log set it (it was set before the oldest kept snapshot)"
    change = last.of("task_state", ti.name)[-1]["data"]
    reason = change.get("reason", "")
    dv = state.workflows[inst.workflow].versions[inst.version - 1]
    tdef = dv.task(ti.name)
    parts = [f"{ti.state} because {last.where()}" + (f": {reason}" if reason else "")]
    for ev in last.of("timer_cancelled", ti.name):
        parts.append(f"the {ev['data']['kind']} timer was cancelled in the same step")
    if last.of("kill_process", ti.name):
        parts.append(f"the worker was told to kill the process of attempt {ti.attempt}")
    if ti.state == "KILL":
        confirmed = [s for s in steps if s.offset >= last.offset and s.of("kill_confirmed", ti.name)]
        if confirmed:
            parts.append(f"process confirmed gone by {confirmed[-1].where()}")
        elif ti.kill_pending:
            parts.append("the worker has not confirmed the process is gone yet")
    if ti.state == "FAILURE":
        exit_code = change.get("exit_code")
        if exit_code is not None:
            parts.insert(0, f"FAILURE: attempt {ti.attempt} exited {exit_code}")
            parts[1] = parts[1].replace("FAILURE because", "decided by", 1)
        retries = tdef.retry_times
        parts.append(f"no retries left (retry_times {retries})" if retries else "no retries (retry_times 0)")
    if ti.state == DELAY:
        parts.append(f"attempt {ti.attempt} of {tdef.retry_times + 1} failed; a retry follows")
    checks = [s for s in steps if s.of("dependent_checked", ti.name)]
    if checks and ti.state not in ("SUCCESS", "FAILURE", "KILL", "FORCED_SUCCESS"):
        check = checks[-1]
        ev = check.of("dependent_checked", ti.name)[-1]["data"]
        if ev["result"] == windows.WAITING:
            parts[0] = f"waiting ({ti.state} since {last.where()})"
        parts.append(f"last DEPENDENT check {check.where()}: {ev['result']} ({ev.get('detail', '')})")
        parts.extend(_windows(state, inst, tdef))
    for p in pending:
        parts.append(f"next {p['kind']} at {p['due']}")
    return "; ".join(parts)


def _windows(state: State, inst: WorkflowInstance, tdef: Any) -> list[str]:
    """For each waiting item: its windows and what this partition knows of them now."""
    out = []
    for item in getattr(getattr(tdef, "dependence", None), "items", []):
        for start, end in windows.windows(item.date_value, inst.base_time, inst.dependent_zone()):
            latest = state.latest_upstream(item.workflow, start, end)
            what = f"`{item.task}` of workflow `{item.workflow}`" if item.task else f"workflow `{item.workflow}`"
            window = f"{iso(start)}..{iso(end)}"
            if latest is None:
                out.append(f"upstream {what} has no instance in window {window}")
            else:
                out.append(f"upstream {what}: latest instance in window {window} is {latest.instance} ({latest.state})")
    return out


def _why_instance(state: State, inst: WorkflowInstance, steps: list[Step]) -> dict[str, Any]:
    changes = [s for s in steps if s.of("workflow_state") or s.of("workflow_finished") or s.of("workflow_started")]
    last = next((s for s in reversed(changes) if any(
        ev["data"]["state"] == inst.state for ev in (*s.of("workflow_state"), *s.of("workflow_finished")))), None)
    parts = []
    if last is not None:
        reason = next((ev["data"]["reason"] for ev in last.of("workflow_state") if ev["data"].get("reason")), "")
        parts.append(f"{inst.state} because {last.where()}" + (f": {reason}" if reason else ""))
        requested = next((s for s in reversed(changes) if s.offset < last.offset and s.of("workflow_state")), None)
        if requested is not None and inst.state in ("STOP", "PAUSE"):
            ev = requested.of("workflow_state")[-1]["data"]
            if ev["state"] in ("READY_STOP", "READY_PAUSE"):
                why_ = f": {ev['reason']}" if ev.get("reason") else ""
                parts.append(f"{ev['state']} since {requested.where()}{why_}")
    else:
        parts.append(f"{inst.state}: no step in the kept log set it")
    tasks = {name: ti.state for name, ti in inst.tasks.items()}
    bad = [n for n, s in tasks.items() if s in ("FAILURE", "KILL")]
    if bad:
        parts.append("tasks " + ", ".join(f"`{n}` {tasks[n]}" for n in bad))
    active = [n for n, ti in inst.tasks.items() if ti.state not in ("SUCCESS", "FAILURE", "KILL", "FORCED_SUCCESS")]
    if active:
        parts.append("still active: " + ", ".join(f"`{n}` {tasks[n]}" for n in active))
    task_whys = {name: _why_task(state, inst, name, steps)["summary"] for name in _task_names(state, inst)}
    return {
        "instance": inst.id,
        "workflow": inst.workflow,
        "state": inst.state,
        "summary": "; ".join(parts),
        "tasks": task_whys,
        "pending": _pending(state, inst.id, None),
        "chain": [
            {"offset": s.offset, "time": s.time, "command": s.command,
             "events": [{"type": ev["type"], **ev["data"]} for ev in s.events if ev["type"].startswith("workflow_")]}
            for s in reversed(changes)
        ],
    }
