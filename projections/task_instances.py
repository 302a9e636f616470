"""`task_instances`: one row per attempt of a task in a workflow instance.

SHELL tasks count attempts from 1 (each dispatch is a new attempt); logic tasks (DEPENDENT)
have the single attempt 0. An attempt starts with its first event (DISPATCH for SHELL) and
ends when it reaches a final state, or, for worker tasks, as soon as its process can no
longer be running: DELAY_EXECUTION (failed, a retry follows), PAUSE (failed while the
workflow pauses) or NEED_FAULT_TOLERANCE (lost). Later events about the same attempt (a kill
while it waits for its retry, the kill confirmation) update the row but not its end.
"""

from __future__ import annotations

import msgspec

from easysched_es.core import events as e
from easysched_es.core.definitions import WORKER_TASK_TYPES
from easysched_es.core.state import DISPATCH, RUNNING, TASK_FINAL
from projections.model import FIRST, Column, Generated, ReadModel, Row, Source, fragment_maker

_STILL_RUNNING = frozenset({DISPATCH, RUNNING})

COLUMNS = (
    Column("instance", "VARCHAR", "workflow instance id (partition-offset of its StartWorkflow command)"),
    Column("task", "VARCHAR", "task name"),
    Column("attempt", "INTEGER", "attempt number: 1, 2, ... for SHELL tasks, 0 for logic tasks"),
    Column("task_type", "VARCHAR", "SHELL, DEPENDENT, ..."),
    Column("state", "VARCHAR", "the task's latest state during this attempt (DolphinScheduler names)"),
    Column("started_at", "TIMESTAMP", "time of the attempt's first event (its dispatch)", FIRST),
    Column("ended_at", "TIMESTAMP", "when the attempt finished, failed, was killed or lost", FIRST),
    Column("reason", "VARCHAR", "why the latest change happened (exit code, kill reason, dependency result)"),
    Column("exit_code", "INTEGER", "the process's exit code (negative: killed by that signal)"),
    Column("worker", "VARCHAR", "the worker that ran it"),
    Column("pid", "INTEGER", "its process id on that worker"),
    Column("timed_out_at", "TIMESTAMP", "when it ran past its timeout", FIRST),
    Column("kill_requested_at", "TIMESTAMP", "time of the command that asked to kill its process", FIRST),
    Column("kill_command", "VARCHAR", "type of that command (stop, kill_task, check_due for a timeout)", FIRST),
    Column("kill_reason", "VARCHAR", "why the process was killed", FIRST),
    Column("kill_confirmed_at", "TIMESTAMP", "when the worker confirmed the process was gone", FIRST),
    Column("outputs", "JSON", "output parameters the attempt set (`${setValue(k=v)}`, `$EASYSCHED_OUTPUT`)"),
    Column("updated_at", "TIMESTAMP", "time of the latest event about this attempt"),
)

_state_row = fragment_maker(
    COLUMNS, "instance", "task", "attempt", "task_type", "state", "started_at", "ended_at", "reason",
    "exit_code", "worker", "pid", "outputs", "updated_at",
)
_kill_row = fragment_maker(
    COLUMNS, "instance", "task", "attempt", "kill_requested_at", "kill_command", "kill_reason", "updated_at"
)
_confirmed_row = fragment_maker(COLUMNS, "instance", "task", "attempt", "exit_code", "kill_confirmed_at", "updated_at")
_timeout_row = fragment_maker(COLUMNS, "instance", "task", "attempt", "timed_out_at", "reason", "updated_at")
_reason_row = fragment_maker(COLUMNS, "instance", "task", "attempt", "reason", "updated_at")


def _task_state(src: Source, seq: int, ev: e.TaskStateChanged) -> Row:
    state = ev.state
    at = src.at
    # Every fragment offers its time as started_at; FIRST keeps the attempt's first one.
    ended = at if state in TASK_FINAL or (ev.task_type in WORKER_TASK_TYPES and state not in _STILL_RUNNING) else None
    return _state_row(
        ev.instance, ev.task, ev.attempt, ev.task_type or None, state, at, ended, ev.reason or None,
        ev.exit_code, ev.worker or None, ev.pid, msgspec.json.encode(ev.outputs) if ev.outputs else None, at,
    )


def _kill_process(src: Source, seq: int, ev: e.KillTaskProcess) -> Row:
    return _kill_row(ev.instance, ev.task, ev.attempt, src.at, src.command, ev.reason or None, src.at)


def _kill_confirmed(src: Source, seq: int, ev: e.KillConfirmed) -> Row:
    return _confirmed_row(ev.instance, ev.task, ev.attempt, ev.exit_code, src.at, src.at)


def _timed_out(src: Source, seq: int, ev: e.TaskTimedOut) -> Row:
    return _timeout_row(ev.instance, ev.task, ev.attempt, src.at, f"timed out (strategy {ev.strategy})", src.at)


def _dependent_checked(src: Source, seq: int, ev: e.DependentChecked) -> Row:
    # Logic tasks have the single attempt 0; the check result tells why a DEPENDENT waits.
    detail = f": {ev.detail}" if ev.detail else ""
    return _reason_row(ev.instance, ev.task, 0, f"dependency {ev.result}{detail}", src.at)


MODEL = ReadModel(
    name="task_instances",
    doc="One row per attempt of a task: when it started and ended, how, where it ran, and its kill.",
    columns=COLUMNS,
    key=("instance", "task", "attempt"),
    generated=(
        Generated(
            "duration_ms", "BIGINT", "epoch_ms(ended_at) - epoch_ms(started_at)",
            "ended_at - started_at in milliseconds (NULL while the attempt runs)",
        ),
    ),
    on_event={
        e.TaskStateChanged: _task_state,
        e.KillTaskProcess: _kill_process,
        e.KillConfirmed: _kill_confirmed,
        e.TaskTimedOut: _timed_out,
        e.DependentChecked: _dependent_checked,
    },
)

