"""`workflow_instances`: one row per run of a workflow."""

from __future__ import annotations

from easysched_es.core import events as e
from projections.model import FIRST, Column, Generated, ReadModel, Row, Source, fragment_maker, json_bytes

COLUMNS = (
    Column("instance", "VARCHAR", "instance id (partition-offset of its StartWorkflow command)"),
    Column("workflow", "VARCHAR", "workflow name"),
    Column("version", "INTEGER", "the definition version it runs"),
    Column("state", "VARCHAR", "RUNNING_EXECUTION, READY_PAUSE, PAUSE, READY_STOP, STOP, FAILURE, SUCCESS"),
    Column("reason", "VARCHAR", "why the latest state change happened (stop requested, ...)"),
    Column("base_time", "TIMESTAMP", "the date DEPENDENT windows are computed from (schedule time or start)"),
    Column("schedule_time", "TIMESTAMP", "the schedule time it was started for, if any"),
    Column("params", "JSON", "its parameters (definition defaults merged with the start command's)"),
    Column("started_at", "TIMESTAMP", "time of the start command", FIRST),
    Column("ended_at", "TIMESTAMP", "when it reached SUCCESS, FAILURE or STOP"),
    Column("task_states", "JSON", "final state of each task, once it ended"),
    Column("updated_at", "TIMESTAMP", "time of the latest event about it"),
    Column("command_type", "VARCHAR", "who started it: START_PROCESS (a user) or SCHEDULER (its schedule)"),
)


_started_row = fragment_maker(
    COLUMNS, "instance", "workflow", "version", "base_time", "schedule_time", "params", "started_at", "updated_at",
    "command_type",
)
_state_row = fragment_maker(COLUMNS, "instance", "state", "reason", "updated_at")
_finished_row = fragment_maker(COLUMNS, "instance", "workflow", "state", "ended_at", "task_states", "updated_at")


def _started(src: Source, seq: int, ev: e.WorkflowStarted) -> Row:
    return _started_row(
        ev.instance, ev.workflow, ev.version, ev.base_time, ev.schedule_time, json_bytes(ev.params), src.at, src.at,
        ev.command_type or "START_PROCESS",
    )


def _state(src: Source, seq: int, ev: e.WorkflowStateChanged) -> Row:
    return _state_row(ev.instance, ev.state, ev.reason or None, src.at)


def _finished(src: Source, seq: int, ev: e.WorkflowFinished) -> Row:
    return _finished_row(ev.instance, ev.workflow, ev.state, src.at, json_bytes(ev.task_states), src.at)


MODEL = ReadModel(
    name="workflow_instances",
    doc="One row per workflow instance: its state, times and parameters.",
    columns=COLUMNS,
    key=("instance",),
    generated=(
        Generated(
            "duration_ms", "BIGINT", "epoch_ms(ended_at) - epoch_ms(started_at)",
            "ended_at - started_at in milliseconds (NULL while it runs)",
        ),
    ),
    on_event={
        e.WorkflowStarted: _started,
        e.WorkflowStateChanged: _state,
        e.WorkflowFinished: _finished,
    },
)
