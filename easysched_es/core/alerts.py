"""Alerts as effects of the fold: raised by what the master decides, sent by the runtime, at least once.

A workflow's `alerts:` (definitions.AlertDef) name what they fire on: the instance ending
FAILURE, SUCCESS or STOP, a timeout with strategy WARN/WARNFAILED, or a worker lost under one
of its tasks. Raising one records a PendingAlert under its idempotency key (the instance, the
occasion, the task and attempt for task-level occasions, and the alert's index; `run2`, `run3`...
after the instance's id once a rerun or recover made it run again) and emits a
`SendAlert` effect for attempt 1. The runtime reports `AlertSent` or `AlertFailed`; a failure
sets an ALERT_RETRY timer in the delay queue with a back-off that doubles, and the attempt
after the last allowed one is never made (`AlertGaveUp`). Every attempt is therefore a command
and an event in the log, and the master never waits on a receiver: sending happens beside it.
After a restart, `pending_effects` owes the attempt in flight again (same key and attempt),
so a receiver that deduplicates by key sees one notification.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core import workflow
from easysched_es.core.state import WF_FAILURE, WF_STOP, WF_SUCCESS, PendingAlert, State, WorkflowInstance
from easysched_es.core.tasks.base import Out

ALERT_RETRY = "ALERT_RETRY"
MAX_DETAIL = 500


def raise_alert(state: State, inst: WorkflowInstance, on: str, detail: str, out: Out, where: str = "") -> None:
    """Raise every alert of `inst`'s definition that fires `on` this occasion (once per key)."""
    entry = state.workflows.get(inst.workflow)
    if entry is None:
        return
    versions = entry.versions
    # Version N is versions[N - 1] (define appends); the scan is the fallback.
    version = versions[inst.version - 1] if 0 < inst.version <= len(versions) else None
    if version is None or version.version != inst.version:
        version = next((v for v in versions if v.version == inst.version), entry.latest)
    for index, alert in enumerate(version.definition.alerts):
        if on not in alert.on:
            continue
        run = f"run{inst.reopened + 1}" if inst.reopened else ""
        key = "/".join(part for part in (inst.id, run, on, where, str(index)) if part)
        if key in state.alerts:
            continue
        send = e.SendAlert(key=key, instance=inst.id, workflow=inst.workflow, on=on, detail=detail[:MAX_DETAIL],
                           attempt=1, raised_at=state.now, webhook=alert.webhook, script=alert.script)
        state.alerts[key] = PendingAlert(send=send, max_attempts=alert.max_attempts,
                                         backoff_ms=round(alert.backoff * 1000))
        out.append(send)


def _finished(state: State, inst: WorkflowInstance, out: Out) -> None:
    if inst.state in (WF_FAILURE, WF_SUCCESS, WF_STOP):
        raise_alert(state, inst, inst.state, f"workflow {inst.workflow} instance {inst.id} ended {inst.state}", out)


workflow.FINISHED.append(_finished)


def pending_effects(state: State) -> list[e.Event]:
    """The attempts in flight (not waiting for a retry timer): owed again after a restart."""
    return [p.send for p in state.alerts.values() if not p.waiting]


def _pending(state: State, key: str, attempt: int) -> PendingAlert | None:
    pending = state.alerts.get(key)
    # A report of another attempt (one sent before a restart and reported twice) changes nothing.
    return pending if pending is not None and pending.send.attempt == attempt and not pending.waiting else None


def _sent(state: State, cmd: c.AlertSent, offset: int, out: Out) -> None:
    if _pending(state, cmd.key, cmd.attempt) is None:
        return
    del state.alerts[cmd.key]
    out.append(e.AlertDelivered(key=cmd.key, instance=cmd.instance, attempt=cmd.attempt))


def _failed(state: State, cmd: c.AlertFailed, offset: int, out: Out) -> None:
    pending = _pending(state, cmd.key, cmd.attempt)
    if pending is None:
        return
    error = cmd.error[:MAX_DETAIL]
    if cmd.attempt >= pending.max_attempts:
        del state.alerts[cmd.key]
        out.append(e.AlertGaveUp(key=cmd.key, instance=cmd.instance, attempts=cmd.attempt, error=error))
        return
    due = state.now + pending.backoff_ms * 2 ** (cmd.attempt - 1)
    pending.waiting = True
    out.append(e.AlertAttemptFailed(key=cmd.key, instance=cmd.instance, attempt=cmd.attempt, error=error,
                                    retry_at=due))
    state.queue.set((cmd.instance, cmd.key, ALERT_RETRY), due)
    out.append(e.TimerSet(instance=cmd.instance, task=cmd.key, kind=ALERT_RETRY, due=due))


def on_due(state: State, instance: str, key: str, due: int, out: Out) -> None:
    """An ALERT_RETRY timer fired: send the next attempt."""
    out.append(e.TimerFired(instance=instance, task=key, kind=ALERT_RETRY, due=due))
    pending = state.alerts.get(key)
    if pending is None or not pending.waiting:
        return
    pending.waiting = False
    pending.send = e.SendAlert(**{**{f: getattr(pending.send, f) for f in pending.send.__struct_fields__},
                                  "attempt": pending.send.attempt + 1})
    out.append(pending.send)


HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {
    c.AlertSent: _sent,
    c.AlertFailed: _failed,
}
