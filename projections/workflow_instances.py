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
    Column("ended_at", "TIMESTAMP",
           "when it last reached SUCCESS, FAILURE or STOP (before reopened_at: the previous run's end)"),
    Column("task_states", "JSON", "final state of each task, once it ended ({} while a rerun or recover runs)"),
    Column("updated_at", "TIMESTAMP", "time of the latest event about it"),
    Column("command_type", "VARCHAR",
           "who started it: START_PROCESS (a user), SCHEDULER (its schedule) or COMPLEMENT_DATA (a backfill)"),
    Column("backfill", "VARCHAR", "the backfill that started it (P-O-backfill), else NULL"),
    Column("reopened_at", "TIMESTAMP", "when a rerun or recover last made the finished instance run again"),
    Column("reopened_as", "VARCHAR", "REPEAT_RUNNING (rerun) or START_FAILURE_TASK_PROCESS (recover), if reopened"),
)


_started_row = fragment_maker(
    COLUMNS, "instance", "workflow", "version", "base_time", "schedule_time", "params", "started_at", "updated_at",
    "command_type", "backfill",
)
_state_row = fragment_maker(COLUMNS, "instance", "state", "reason", "updated_at")
_reopened_row = fragment_maker(COLUMNS, "instance", "task_states", "updated_at", "reopened_at", "reopened_as")
_finished_row = fragment_maker(COLUMNS, "instance", "workflow", "state", "ended_at", "task_states", "updated_at")


def _started(src: Source, seq: int, ev: e.WorkflowStarted) -> Row:
    return _started_row(
        ev.instance, ev.workflow, ev.version, ev.base_time, ev.schedule_time, json_bytes(ev.params), src.at, src.at,
        ev.command_type or "START_PROCESS", ev.backfill or None,
    )


def _state(src: Source, seq: int, ev: e.WorkflowStateChanged) -> Row:
    return _state_row(ev.instance, ev.state, ev.reason or None, src.at)


def _reopened(src: Source, seq: int, ev: e.WorkflowReopened) -> Row:
    return _reopened_row(ev.instance, json_bytes({}), src.at, src.at, ev.command_type)


def _finished(src: Source, seq: int, ev: e.WorkflowFinished) -> Row:
    return _finished_row(ev.instance, ev.workflow, ev.state, src.at, json_bytes(ev.task_states), src.at)


MODEL = ReadModel(
    name="workflow_instances",
    doc="One row per workflow instance: its state, times and parameters.",
    columns=COLUMNS,
    key=("instance",),
    generated=(
        Generated(
            "duration_ms", "BIGINT",
            "CASE WHEN ended_at < reopened_at THEN NULL"
            " ELSE epoch_ms(ended_at) - epoch_ms(coalesce(reopened_at, started_at)) END",
            "how long its latest run took in milliseconds: ended_at - started_at, or - reopened_at"
            " after a rerun or recover (NULL while it runs)",
        ),
    ),
    on_event={
        e.WorkflowStarted: _started,
        e.WorkflowStateChanged: _state,
        e.WorkflowReopened: _reopened,
        e.WorkflowFinished: _finished,
    },
)
