"""How a state is shown to people and scripts: the `status` and `timers` JSON shapes."""

from __future__ import annotations

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
        "started": iso(inst.started),
        "ended": iso(inst.ended),
        "tasks": [
            {
                "name": t.name,
                "type": t.type,
                "state": t.state,
                "attempt": t.attempt,
                "pid": t.pid,
                "kill_pending": t.kill_pending,
            }
            for t in inst.tasks.values()
        ],
    }


def status_view(state: State, instance: str | None = None) -> list[dict[str, Any]]:
    """Every instance (or the one named) in the `status --json` shape."""
    if instance is not None:
        inst = state.instances.get(instance)
        return [] if inst is None else [instance_view(inst)]
    return [instance_view(i) for i in state.instances.values()]


def timers_view(state: State) -> list[dict[str, Any]]:
    """Every pending delay-queue entry in firing order."""
    return [
        {"instance": t.instance, "task": t.task, "kind": t.kind, "due": iso(t.due), "due_ms": t.due}
        for t in state.queue.entries()
    ]
