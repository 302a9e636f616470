"""The registry of read models and the bookkeeping tables.

Adding a read model is one new module with a `MODEL` and one line in `MODELS`. The schema
fingerprint covers every table's DDL, so a changed or added table makes the projector
rebuild from the log on its next start instead of filling the new table from "now" on.
"""

from __future__ import annotations

import hashlib

from projections import (
    backfills,
    commands_log,
    events_log,
    schedule_fires,
    schedules,
    task_instances,
    timers,
    workflow_definitions,
    workflow_instances,
    workflows,
)
from projections.model import Column, ReadModel
from projections.views import VIEWS, View

MODELS: tuple[ReadModel, ...] = (
    workflow_definitions.MODEL,
    workflows.MODEL,
    workflow_instances.MODEL,
    task_instances.MODEL,
    timers.MODEL,
    schedules.MODEL,
    schedule_fires.MODEL,
    backfills.MODEL,
    events_log.MODEL,
    commands_log.MODEL,
)

OFFSETS = ReadModel(
    name="projection_offsets",
    doc="How far the projection has read each stream partition; written in the same transaction as the rows.",
    columns=(
        Column("stream", "VARCHAR", "events or commands"),
        Column("partition", "INTEGER", "stream partition"),
        Column("next_offset", "BIGINT", "offset to read next: everything before it is in the tables"),
        Column("last_command_offset", "BIGINT", "command offset of the last applied record (repeats are skipped)"),
        Column("records", "BIGINT", "records applied from this partition since the last rebuild"),
        Column("updated_at", "TIMESTAMP", "wall-clock time of the transaction that wrote this row"),
    ),
    key=("stream", "partition"),
)

NOTES = ReadModel(
    name="projection_notes",
    doc="Values a table could not hold, stored as NULL instead: one row per column and transaction.",
    columns=(
        Column("noted_at", "TIMESTAMP", "wall-clock time of the transaction that stored the NULLs"),
        Column("read", "VARCHAR", "the stream ranges that transaction applied: where to look in the log"),
        Column("note", "VARCHAR", "table.column, how many values became NULL, and the first of them"),
    ),
)

META_TABLE = "projection_meta"
META_DDL = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)"

TABLES: tuple[ReadModel, ...] = (*MODELS, OFFSETS, NOTES)
ALL_VIEWS: tuple[View, ...] = VIEWS


def fingerprint() -> str:
    """A hash of every table's DDL: it changes exactly when a rebuild is needed."""
    digest = hashlib.sha256()
    for model in TABLES:
        digest.update(model.ddl().encode())
    return digest.hexdigest()[:16]
