"""`backfills`: one row per backfill (COMPLEMENT_DATA), with its counts as its dates end.

Its instances are rows of `workflow_instances` with `backfill` = its id; the raw events are in
`events` (`backfill_started`, `backfill_date`, `backfill_finished`).
"""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import FIRST, Column, ReadModel, Row, Source, fragment_maker, json_bytes

COLUMNS = (
    Column("backfill", "VARCHAR", "backfill id (P-O-backfill: partition and offset of its command)"),
    Column("workflow", "VARCHAR", "the workflow backfilled"),
    Column("state", "VARCHAR", "RUNNING_EXECUTION, SUCCESS, FAILURE or STOP"),
    Column("total", "BIGINT", "dates in its range (or list)"),
    Column("succeeded", "BIGINT", "dates whose instances (dependents included) all succeeded"),
    Column("failed", "BIGINT", "dates with an instance that did not succeed"),
    Column("first_date", "TIMESTAMP", "the first date in run order (UTC)"),
    Column("last_date", "TIMESTAMP", "the last date in run order (UTC)"),
    Column("parallel", "INTEGER", "dates in flight at most (1: serial)"),
    Column("reverse", "BOOLEAN", "latest date first"),
    Column("dependents", "JSON", "the workflows backfilled after each date (--dependents)"),
    Column("reason", "VARCHAR", "why it ended as it did (failed dates, failure strategy END, stopped by user)"),
    Column("started_at", "TIMESTAMP", "time of the backfill command", FIRST),
    Column("ended_at", "TIMESTAMP", "when it ended (its last instances may still be stopping)"),
    Column("updated_at", "TIMESTAMP", "time of the latest event about it"),
)

_started_row = fragment_maker(COLUMNS, "backfill", "workflow", "state", "total", "succeeded", "failed", "first_date",
                              "last_date", "parallel", "reverse", "dependents", "started_at", "updated_at")
_date_row = fragment_maker(COLUMNS, "backfill", "succeeded", "failed", "updated_at")
_finished_row = fragment_maker(COLUMNS, "backfill", "state", "succeeded", "failed", "reason", "ended_at", "updated_at")


def _started(src: Source, seq: int, ev: e.BackfillStarted) -> Row:
    return _started_row(ev.backfill, ev.workflow, "RUNNING_EXECUTION", ev.total, 0, 0, ev.first, ev.last, ev.parallel,
                        ev.reverse, json_bytes(ev.dependents), src.at, src.at)


def _date(src: Source, seq: int, ev: e.BackfillDate) -> Row:
    return _date_row(ev.backfill, ev.succeeded, ev.failed, src.at)


def _finished(src: Source, seq: int, ev: e.BackfillFinished) -> Row:
    return _finished_row(ev.backfill, ev.state, ev.succeeded, ev.failed, ev.reason or None, src.at, src.at)


MODEL = ReadModel(
    name="backfills",
    doc="One row per backfill: its workflow, state, date counts and range.",
    columns=COLUMNS,
    key=("backfill",),
    on_event={e.BackfillStarted: _started, e.BackfillDate: _date, e.BackfillFinished: _finished},
)
