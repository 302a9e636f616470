"""`schedules`: cron schedules of workflows.

The core has no schedule commands yet, so nothing fills this table: it exists so queries and
reports can rely on it. When schedule events land, their handlers go into `on_event` here.
"""

from __future__ import annotations

from projections.model import Column, ReadModel

MODEL = ReadModel(
    name="schedules",
    doc="Cron schedules of workflows (empty until the core has schedule commands).",
    columns=(
        Column("workflow", "VARCHAR", "workflow name"),
        Column("cron", "VARCHAR", "cron expression"),
        Column("online", "BOOLEAN", "whether the schedule fires"),
        Column("next_fire", "TIMESTAMP", "next fire time"),
        Column("updated_at", "TIMESTAMP", "time of the latest change"),
    ),
    key=("workflow",),
    note="Filled once schedule commands exist in the core; empty until then.",
)
