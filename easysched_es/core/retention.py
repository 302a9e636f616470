"""Retention, decided in the fold: finished instances leave the hot state after a policy period.

`ApplyRetention(now)` (appended by `easysched gc` and, hourly, by `easysched run`) removes every
final instance that ended at least its workflow's `retention_days` (default 30) before `now`,
unless its parent instance (SUB_WORKFLOW) is still hot. The log and the DuckDB projection keep
them; `trace` and `replay` still find them in the log. An ended backfill (core/backfill.py)
leaves after the same period, once nothing it started still runs.

DEPENDENT checks do not read instances: they read the compact per-workflow index of results
(`State.upstream`, one small record per instance). That index keeps a record for as long as the
longest date window can reach back from a current base time (`lastMonth`: two months, plus
slack: UPSTREAM_DAYS), or longer if the workflow's retention is longer; so a DEPENDENT decision
with a base time within UPSTREAM_DAYS of now is the same with or without retention. A DEPENDENT
whose base time lies further back (a backfill of last year) finds the records gone and waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.state import WF_FINAL, State, UpstreamRecord
from easysched_es.core.tasks.base import Out

DAY_MS = 86_400_000
DEFAULT_RETENTION_DAYS = 30.0
UPSTREAM_DAYS = 93.0
"""Days the DEPENDENT index keeps a finished instance's record (lastMonth reaches back 62)."""


def retention_ms(state: State, workflow: str) -> int:
    """The retention period of a workflow's finished instances, in milliseconds."""
    entry = state.workflows.get(workflow)
    days = entry.latest.definition.retention_days if entry is not None else None
    return round((DEFAULT_RETENTION_DAYS if days is None else days) * DAY_MS)


def due_for_retirement(state: State, now: int) -> list[str]:
    """The instances `ApplyRetention(now)` removes, in state order."""
    policy: dict[str, int] = {}
    out = []
    for inst in state.instances.values():
        if inst.state not in WF_FINAL or inst.ended is None:
            continue
        keep = policy.get(inst.workflow)
        if keep is None:
            keep = policy[inst.workflow] = retention_ms(state, inst.workflow)
        if inst.ended + keep > now:
            continue
        parent = state.instances.get(inst.parent) if inst.parent else None
        if parent is not None and parent.state not in WF_FINAL:
            continue
        out.append(inst.id)
    return out


def retired(state: State, instance: str) -> tuple[str, UpstreamRecord] | None:
    """The workflow and DEPENDENT index record of an instance that retention removed from the
    hot state; None if it is hot, or unknown (never started, or its record is pruned too).

    The index outlives retention (UPSTREAM_DAYS), so `wait` and `status` can still say how such
    an instance ended, and point to `trace`, which reads it from the log.
    """
    if instance in state.instances:
        return None
    for workflow, records in state.upstream.items():
        record = records.get(instance)
        if record is not None and record.state in WF_FINAL:
            return workflow, record
    return None


def _prune_upstream(state: State, now: int, hot: set[str]) -> int:
    pruned = 0
    for workflow, records in state.upstream.items():
        horizon = now - max(round(UPSTREAM_DAYS * DAY_MS), retention_ms(state, workflow))
        old = [i for i, r in records.items() if r.base_time < horizon and i not in hot]
        for instance in old:
            del records[instance]
        if old:
            pruned += len(old)
            state._upstream_by_time.pop(workflow, None)  # the bisect index is rebuilt lazily
    return pruned


def _apply(state: State, cmd: c.ApplyRetention, offset: int, out: Out) -> None:
    retired = due_for_retirement(state, cmd.now)
    for instance in retired:
        del state.instances[instance]
    pruned = _prune_upstream(state, cmd.now, set(state.instances))
    # An ended backfill (its cursor and counts) goes after its workflow's retention period too.
    ended = [b.id for b in state.backfills.values()
             if b.ended is not None and b.ended + retention_ms(state, b.workflow) <= cmd.now and not b.inflight]
    for backfill in ended:
        del state.backfills[backfill]
    out.append(e.InstancesRetired(now=cmd.now, instances=retired, upstream_records=pruned, backfills=ended))


HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {c.ApplyRetention: _apply}
"""The retention command's handler (merged into step.py's table)."""
