"""`workflows`: one row per workflow name: its newest version and release state (ONLINE/OFFLINE).

The release state belongs to the workflow, not to a version, so it lives here rather than in
`workflow_definitions`.
"""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import FIRST, Column, ReadModel, Row, Source

COLUMNS = (
    Column("workflow", "VARCHAR", "workflow name"),
    Column("latest_version", "INTEGER", "newest version (new instances start it)"),
    Column("online", "BOOLEAN", "released (ONLINE): it can be started"),
    Column("defined_at", "TIMESTAMP", "when its first version was defined", FIRST),
    Column("updated_at", "TIMESTAMP", "time of its latest definition or release change"),
)


def _defined(src: Source, seq: int, ev: e.WorkflowDefined) -> Row:
    return (ev.workflow, ev.version, ev.online, src.at, src.at)


def _release(src: Source, seq: int, ev: e.ReleaseStateChanged) -> Row:
    return (ev.workflow, None, ev.online, None, src.at)


MODEL = ReadModel(
    name="workflows",
    doc="One row per workflow: newest version and whether it is ONLINE.",
    columns=COLUMNS,
    key=("workflow",),
    on_event={e.WorkflowDefined: _defined, e.ReleaseStateChanged: _release},
)
