"""`events`: the raw events log, one row per event, for analytics and debugging.

The handler stages one row per events record (an `EventBatch`) with its events as one JSON
array, encoded in a single call; DuckDB unnests the array into one row per event. Building
a Python row per event cost several times more than everything DuckDB does here.

Append-only: exactly-once comes from the offset stored in the same transaction, so a row
needs no key (a primary key would cost an index insert per event for nothing).
"""

from __future__ import annotations

from easysched_es.core.events import EventBatch
from projections.model import Column, ReadModel, Row, Source, json_bytes

COLUMNS = (
    Column("partition", "INTEGER", "partition of the events stream"),
    Column("event_offset", "BIGINT", "offset of the record (one EventBatch) in the events stream"),
    Column("command_offset", "BIGINT", "offset of the command that caused it (joins commands.command_offset)"),
    Column("seq", "INTEGER", "position of the event within its batch"),
    Column("time", "TIMESTAMP", "time of the command that caused it"),
    Column("command", "VARCHAR", "type of that command (start, stop, task_finished, check_due, ...)"),
    Column("type", "VARCHAR", "event type (task_state, timer_set, dispatch, ...)"),
    Column("instance", "VARCHAR", "workflow instance it is about, if any"),
    Column("task", "VARCHAR", "task it is about, if any"),
    Column("payload", "JSON", "the whole event"),
)

STAGE = (
    Column("partition", "INTEGER", "partition of the events stream"),
    Column("event_offset", "BIGINT", "offset of the record"),
    Column("command_offset", "BIGINT", "offset of the command"),
    Column("time", "TIMESTAMP", "time of the command"),
    Column("command", "VARCHAR", "type of the command"),
    Column("events", "JSON", "the batch's events as a JSON array"),
)

# The array is parsed once; unnest and generate_subscripts in one select list zip element by
# element; one multi-path extraction per event reads its three scalar fields.
EXPAND = """SELECT "partition", event_offset, command_offset, CAST(seq - 1 AS INTEGER), "time", command,
       f[1], f[2], f[3], ev
FROM (
    SELECT *, json_extract_string(ev, ['$.type', '$.instance', '$.task']) AS f
    FROM (
        SELECT *, unnest(arr) AS ev, generate_subscripts(arr, 1) AS seq
        FROM (SELECT *, json_extract(events, '$[*]') AS arr FROM {stage})
    )
)"""


def _batch(src: Source, seq: int, batch: EventBatch) -> Row | None:
    if not batch.events:
        return None
    return (src.partition, src.offset, src.command_offset, src.at, src.command, json_bytes(batch.events))


MODEL = ReadModel(
    name="events",
    doc="The raw events log: every event with its offsets, time, type and JSON payload.",
    columns=COLUMNS,
    on_batch=_batch,
    stage=STAGE,
    expand=EXPAND,
)
