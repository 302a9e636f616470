"""`schedule_fires`: what became of every nominal fire time of every schedule.

One row per (workflow, nominal time): STARTED (with the instance), SKIPPED (with the reason:
missed beyond the catch-up window, overlap SKIP, buffer full, workflow OFFLINE) or BUFFERED
(waiting for the running instance; it becomes STARTED or SKIPPED later). A long run of
skipped fires is one row with `last_nominal` and `count`.
"""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import FIRST, Column, ReadModel, Row, Source

COLUMNS = (
    Column("workflow", "VARCHAR", "workflow name"),
    Column("nominal", "TIMESTAMP", "the nominal fire time (UTC), the instance's schedule_time"),
    Column("outcome", "VARCHAR", "STARTED, SKIPPED or BUFFERED (the latest)"),
    Column("instance", "VARCHAR", "the instance it started"),
    Column("reason", "VARCHAR", "why it was skipped or buffered (or 'from the buffer', 'triggered by hand')"),
    Column("fired_at", "TIMESTAMP", "time of the command that decided it first (the tick: actual fire)", FIRST),
    Column("decided_at", "TIMESTAMP", "time of the command that decided its latest outcome"),
    Column("lateness_ms", "BIGINT", "fired_at - nominal: how late the tick came", FIRST),
    Column("last_nominal", "TIMESTAMP", "for a run of skipped fires: the last one"),
    Column("count", "BIGINT", "fires this row stands for (1, or a skipped run's length; -1: very many)"),
)


def _fired(src: Source, seq: int, ev: e.ScheduleFired) -> Row:
    return (ev.workflow, ev.nominal, ev.outcome, ev.instance or None, ev.reason or None, src.at, src.at,
            src.at - ev.nominal, ev.last, ev.count)


MODEL = ReadModel(
    name="schedule_fires",
    doc="Every nominal fire of every schedule: started instance, skip reason or buffered.",
    columns=COLUMNS,
    key=("workflow", "nominal"),
    on_event={e.ScheduleFired: _fired},
)
