"""`commands`: the raw commands log, one row per command record, for analytics and debugging.

A record that is corrupt or does not decode still gets a row (type "?", the reason in
`error`), as the master records it as rejected: the table mirrors the log, damage included.
"""

from __future__ import annotations

from typing import Any, get_args

from easysched_es.core import commands as c
from projections.model import Column, ReadModel, Row, Source, Undecodable, json_bytes, tag_of

COLUMNS = (
    Column("partition", "INTEGER", "partition of the commands stream"),
    Column("command_offset", "BIGINT", "offset of the command in the commands stream"),
    Column("time", "TIMESTAMP", "when it happened (stamped by the client or worker that appended it)"),
    Column("type", "VARCHAR", "command type (define, start, stop, task_finished, check_due, ...; ? if unreadable)"),
    Column("instance", "VARCHAR", "workflow instance it is about, if any"),
    Column("task", "VARCHAR", "task it is about, if any"),
    Column("workflow", "VARCHAR", "workflow it is about, if any"),
    Column("payload", "JSON", "the whole command"),
    Column("error", "VARCHAR", "why the record could not be read (NULL for a good record)"),
)

_TAGS = {cls: tag_of(cls) for cls in get_args(c.Command)}


def _command(src: Source, seq: int, cmd: Any) -> Row:
    workflow = cmd.definition.name if isinstance(cmd, c.DefineWorkflow) else getattr(cmd, "workflow", None)
    return (
        src.partition, src.offset, src.at, _TAGS[type(cmd)], getattr(cmd, "instance", None) or None,
        getattr(cmd, "task", None) or None, workflow or None, json_bytes(cmd), None,
    )


def _undecodable(src: Source, seq: int, bad: Undecodable) -> Row:
    return (src.partition, src.offset, None, "?", None, None, None, None, bad.reason)


MODEL = ReadModel(
    name="commands",
    doc="The raw commands log: every command with its offset, time, type and JSON payload.",
    columns=COLUMNS,
    on_command={**dict.fromkeys(_TAGS, _command), Undecodable: _undecodable},
)
