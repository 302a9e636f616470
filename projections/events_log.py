"""`events`: the raw events log, one row per event, for analytics and debugging.

Append-only: exactly-once comes from the offset stored in the same transaction, so a row
needs no key (a primary key would cost an index insert per event for nothing).
"""

from __future__ import annotations

from typing import Any, get_args

from easysched_es.core import events as e
from projections.model import Column, ReadModel, Row, Source, json_bytes, tag_of

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

_TAGS = {cls: tag_of(cls) for cls in get_args(e.Event)}


def _event(src: Source, seq: int, ev: Any) -> Row:
    return (
        src.partition, src.offset, src.command_offset, seq, src.at, src.command, _TAGS[type(ev)],
        getattr(ev, "instance", None) or None, getattr(ev, "task", None) or None, json_bytes(ev),
    )


MODEL = ReadModel(
    name="events",
    doc="The raw events log: every event with its offsets, time, type and JSON payload.",
    columns=COLUMNS,
    on_event=dict.fromkeys(_TAGS, _event),
)
