"""`timers`: the master's delay queue exactly as it stands, one row per pending entry.

An entry is keyed (instance, task, kind) and there is at most one per key: `TimerSet` adds it
or moves it, `TimerCancelled` and `TimerFired` remove it. Killing a task cancels its entries
in the same step, so a killed task has no row here.
"""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import Column, Delete, ReadModel, Row, Source

COLUMNS = (
    Column("instance", "VARCHAR", "workflow instance id"),
    Column("task", "VARCHAR", "task name"),
    Column("kind", "VARCHAR", "DEPENDENT_CHECK, RETRY or TIMEOUT"),
    Column("due", "TIMESTAMP", "when it fires (the master appends CheckDue once the clock passes it)"),
    Column("set_at", "TIMESTAMP", "time of the command that set (or last moved) it"),
)


def _set(src: Source, seq: int, ev: e.TimerSet) -> Row:
    return (ev.instance, ev.task, ev.kind, ev.due, src.at)


def _gone(src: Source, seq: int, ev: e.TimerCancelled | e.TimerFired) -> Delete:
    return Delete((ev.instance, ev.task, ev.kind))


MODEL = ReadModel(
    name="timers",
    doc="The delay queue: every pending timer (DEPENDENT re-check, retry wait, timeout).",
    columns=COLUMNS,
    key=("instance", "task", "kind"),
    on_event={e.TimerSet: _set, e.TimerCancelled: _gone, e.TimerFired: _gone},
)
