"""`schedules`: one row per workflow schedule, as the fold holds it (deleted schedules leave).

`next_fire` is the due time of its one SCHEDULE delay-queue entry; `armed` says whether that
entry exists (an OFFLINE schedule, or one past its end, has none).
"""

from __future__ import annotations

from easysched_es.core import events as e
from easysched_es.core.schedules import SCHEDULE
from projections.model import FIRST, Column, Delete, ReadModel, Row, Source

COLUMNS = (
    Column("workflow", "VARCHAR", "workflow name (one schedule per workflow)"),
    Column("cron", "VARCHAR", "cron expression (Quartz or 5-field)"),
    Column("timezone", "VARCHAR", "IANA zone the cron is read in"),
    Column("overlap", "VARCHAR", "overlap policy: SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER, ALLOW_ALL"),
    Column("catchup_window_ms", "BIGINT", "0: only the latest missed fire runs; -1: all; N: those of the last N ms"),
    Column("start_at", "TIMESTAMP", "no fire before this time"),
    Column("end_at", "TIMESTAMP", "no fire after this time"),
    Column("online", "BOOLEAN", "whether the schedule fires"),
    Column("next_fire", "TIMESTAMP", "due time of its pending fire (the delay-queue entry), when armed"),
    Column("armed", "BOOLEAN", "its delay-queue entry exists"),
    Column("created_at", "TIMESTAMP", "time of the command that first set it", FIRST),
    Column("updated_at", "TIMESTAMP", "time of the latest change"),
)


def _set(src: Source, seq: int, ev: e.ScheduleSet) -> Row:
    return (ev.workflow, ev.cron, ev.timezone, ev.overlap, ev.catchup_window, ev.start, ev.end, ev.online,
            None, None, src.at, src.at)


def _state(src: Source, seq: int, ev: e.ScheduleStateChanged) -> Row | Delete:
    if ev.deleted:
        return Delete((ev.workflow,))
    return (ev.workflow, None, None, None, None, None, None, ev.online, None, None, None, src.at)


def _armed(src: Source, seq: int, ev: e.TimerSet) -> Row | None:
    if ev.kind != SCHEDULE:
        return None
    return (ev.task, None, None, None, None, None, None, None, ev.due, True, None, src.at)


def _disarmed(src: Source, seq: int, ev: e.TimerCancelled | e.TimerFired) -> Row | None:
    if ev.kind != SCHEDULE:
        return None
    return (ev.task, None, None, None, None, None, None, None, None, False, None, src.at)


MODEL = ReadModel(
    name="schedules",
    doc="Cron schedules of workflows: expression, zone, policies, state and pending fire.",
    columns=COLUMNS,
    key=("workflow",),
    on_event={e.ScheduleSet: _set, e.ScheduleStateChanged: _state, e.TimerSet: _armed,
              e.TimerCancelled: _disarmed, e.TimerFired: _disarmed},
)
