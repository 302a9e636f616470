"""How a state is shown to people and scripts: the `status` and `timers` JSON shapes.

A view takes one State or several (one per Kafka partition) and merges them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from easysched_es.core.state import State, WorkflowInstance


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_view(inst: WorkflowInstance) -> dict[str, Any]:
    """One instance in the `status --json` shape."""
    return {
        "instance": inst.id,
        "workflow": inst.workflow,
        "state": inst.state,
        "version": inst.version,
        # The same names and text as the projection, the HTTP API and the client (ISO-8601 ms, Z).
        "started_at": iso(inst.started),
        "ended_at": iso(inst.ended),
        # Who started it: START_PROCESS (a user), SCHEDULER (the workflow's schedule, for schedule_time).
        "command_type": inst.command_type or "START_PROCESS",
        "schedule_time": iso(inst.schedule_time),
        "timezone": inst.zone or "UTC",  # of DS_DATE and the time parameters
        **({"backfill": inst.backfill} if inst.backfill else {}),  # the backfill that started it
        "tasks": [
            {
                "name": t.name,
                "type": t.type,
                "state": t.state,
                "attempt": t.attempt,
                "started_at": iso(t.started),
                "ended_at": iso(t.ended),
                "exit_code": t.exit_code,
                "worker": t.worker,
                "pid": t.pid,
                "kill_pending": t.kill_pending,
                **({"outputs": t.outputs} if t.outputs else {}),
                **({"note": t.note} if t.note else {}),
            }
            for t in inst.tasks.values()
        ],
    }


def _each(states: State | Iterable[State]) -> list[State]:
    return [states] if isinstance(states, State) else list(states)


def status_view(
    states: State | Iterable[State],
    instance: str | None = None,
    *,
    workflow: str | None = None,
    state: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Every instance (or the one named) in the `status --json` shape, partition by partition.

    `workflow` and `state` (a set of instance states) filter before any view is built, so a
    narrow question over a big state costs only its answer.
    """
    each = _each(states)
    wanted = None if state is None else {s.upper() for s in state}
    if instance is not None:
        found = [s.instances[instance] for s in each if instance in s.instances]
    else:
        found = [i for s in each for i in s.instances.values()]
    if workflow is not None:
        found = [i for i in found if i.workflow == workflow]
    if wanted:
        found = [i for i in found if i.state in wanted]
    return [instance_view(inst) for inst in (found[:1] if instance is not None else found)]


def timers_view(states: State | Iterable[State], instances: set[str] | None = None) -> list[dict[str, Any]]:
    """Every pending delay-queue entry in firing order (merged over the partitions), or those of `instances`."""
    return [
        {"instance": t.instance, "task": t.task, "kind": t.kind, "due": iso(t.due), "due_ms": t.due}
        for t in heapq.merge(*(s.queue.entries() for s in _each(states)), key=lambda t: t.due)
        if instances is None or t.instance in instances
    ]
