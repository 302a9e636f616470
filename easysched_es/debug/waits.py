"""Who waits for what: tasks waiting for a slot and instances waiting for max_active_instances.

The `timers` and `status` commands show these beside the delay queue, because a waiting task
has no timer: it is dispatched when a slot frees, which no clock can tell.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from easysched_es.core import capacity
from easysched_es.core.state import State
from easysched_es.debug.views import _each, iso


def waits_view(states: State | Iterable[State]) -> list[dict[str, Any]]:
    """Every waiting task (dispatch order) and waiting instance (FIFO), partition by partition."""
    out: list[dict[str, Any]] = []
    for state in _each(states):
        cap = state.capacity
        for w in cap.waiting():
            out.append({
                "kind": "SLOT_WAIT",
                "partition": state.partition,
                "instance": w.instance,
                "task": w.task,
                "since": iso(w.since),
                "waiting_for": capacity.blocked(state, tuple(w.resources)) or capacity.WAITING,
                "resources": w.resources,
            })
        for workflow, ids in cap.serial.items():
            most = state.workflows[workflow].latest.definition.max_active_instances
            busy = capacity.active_instances(state, workflow)
            for place, instance in enumerate(ids):
                out.append({
                    "kind": "SERIAL_WAIT",
                    "partition": state.partition,
                    "instance": instance,
                    "task": None,
                    "since": iso(state.instances[instance].started),
                    "waiting_for": f"max_active_instances {most} of workflow {workflow} ({busy} active, "
                                   f"place {place + 1} in line)",
                    "resources": [],
                })
    return out


def pools_view(states: State | Iterable[State]) -> list[dict[str, Any]]:
    """Every pool and announced worker group with its slots, busy count and waiting tasks."""
    rows: dict[str, dict[str, Any]] = {}
    for state in _each(states):
        cap = state.capacity
        pools = sorted(set(cap.pools) | {r[2:] for r, n in cap.waiters.items() if n and r.startswith("p:")})
        names = [f"p:{p}" for p in pools] + [f"g:{g}" for g in sorted(cap.groups())]
        for r in names:
            row = rows.setdefault(r, {"name": capacity.describe(r), "slots": 0, "busy": 0, "waiting": 0})
            row["slots"] += capacity.limit(state, r) or 0
            row["busy"] += capacity.used(state, r)
            row["waiting"] += cap.waiters.get(r, 0)
    return list(rows.values())


def annotate_status(view: list[dict[str, Any]], states: State | Iterable[State]) -> list[dict[str, Any]]:
    """Add `waiting_for` to the tasks and instances of a `status` view that wait for capacity."""
    waits = {(w["instance"], w["task"]): w["waiting_for"] for w in waits_view(states)}
    if not waits:
        return view
    for inst in view:
        why = waits.get((inst["instance"], None))
        if why:
            inst["waiting_for"] = why
        for t in inst["tasks"]:
            why = waits.get((inst["instance"], t["name"]))
            if why:
                t["waiting_for"] = why
    return view
