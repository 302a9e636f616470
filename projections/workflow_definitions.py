"""`workflow_definitions`: one row per stored version of a workflow, with its definition as JSON."""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import Column, ReadModel, Row, Source, json_bytes

COLUMNS = (
    Column("workflow", "VARCHAR", "workflow name"),
    Column("version", "INTEGER", "version number, 1 for the first definition"),
    Column("defined_at", "TIMESTAMP", "time of the define command"),
    Column("description", "VARCHAR", "the definition's description"),
    Column("task_count", "INTEGER", "number of tasks"),
    Column("definition", "JSON", "the whole definition (tasks, upstreams, params, ...)"),
)


def _defined(src: Source, seq: int, ev: e.WorkflowDefined) -> Row:
    d = ev.definition
    return (ev.workflow, ev.version, src.at, d.description or None, len(d.tasks), json_bytes(d))


MODEL = ReadModel(
    name="workflow_definitions",
    doc="One row per version of a workflow definition.",
    columns=COLUMNS,
    key=("workflow", "version"),
    on_event={e.WorkflowDefined: _defined},
)
