"""Pure tests of each read model's mapping from events (or commands) to rows; no DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import msgspec
import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.events import EventBatch
from projections import (
    commands_log,
    events_log,
    task_instances,
    timers,
    workflow_definitions,
    workflow_instances,
    workflows,
)
from projections.model import Column, Delete, ReadModel, Source, Undecodable, fragment_maker
from projections.schema import TABLES
from projections.views import VIEWS
from tests.projections.workload import ETL

AT = 1_767_225_600_000


def src(at: int = AT, command: str = "task_finished", offset: int = 100, command_offset: int = 40) -> Source:
    return Source("events", 0, offset, command_offset, at, command)


def row(model: ReadModel, event: object, source: Source | None = None, seq: int = 0) -> dict[str, object]:
    op = model.on_event[type(event)](source or src(), seq, event)
    assert op is not None and not isinstance(op, Delete)
    return model.as_dict(op)


def set_fields(values: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


# ---------------------------------------------------------------------------- task_instances

TI = task_instances.MODEL


def state_event(state: str, task_type: str = "SHELL", attempt: int = 1, **kw: object) -> e.TaskStateChanged:
    return e.TaskStateChanged(instance="0-7", task="extract", state=state, attempt=attempt, task_type=task_type, **kw)


def test_dispatch_starts_an_attempt() -> None:
    assert set_fields(row(TI, state_event("DISPATCH"))) == {
        "instance": "0-7", "task": "extract", "attempt": 1, "task_type": "SHELL", "state": "DISPATCH",
        "started_at": AT, "updated_at": AT,
    }


def test_running_reports_pid_and_worker_and_does_not_end() -> None:
    r = row(TI, state_event("RUNNING_EXECUTION", pid=42, worker="w1"))
    assert (r["pid"], r["worker"], r["ended_at"]) == (42, "w1", None)


@pytest.mark.parametrize(
    ("state", "task_type", "ends"),
    [
        ("SUCCESS", "SHELL", True),
        ("FAILURE", "SHELL", True),
        ("KILL", "SHELL", True),
        ("FORCED_SUCCESS", "SHELL", True),
        ("DELAY_EXECUTION", "SHELL", True),  # failed, a retry follows as the next attempt
        ("PAUSE", "SHELL", True),  # failed while the workflow pauses: its process is gone
        ("NEED_FAULT_TOLERANCE", "SHELL", True),  # lost: re-dispatched as the next attempt
        ("DISPATCH", "SHELL", False),
        ("RUNNING_EXECUTION", "SHELL", False),
        ("RUNNING_EXECUTION", "DEPENDENT", False),
        ("PAUSE", "DEPENDENT", False),  # a paused DEPENDENT resumes in the same attempt 0
        ("SUCCESS", "DEPENDENT", True),
        ("KILL", "DEPENDENT", True),
    ],
)
def test_which_states_end_an_attempt(state: str, task_type: str, ends: bool) -> None:
    r = row(TI, state_event(state, task_type, attempt=0 if task_type == "DEPENDENT" else 1))
    assert (r["ended_at"] == AT) is ends


def test_reason_and_exit_code_are_carried() -> None:
    r = row(TI, state_event("DELAY_EXECUTION", reason="exit code 1; retry 1 of 2", exit_code=1))
    assert (r["reason"], r["exit_code"]) == ("exit code 1; retry 1 of 2", 1)


def test_kill_process_records_the_request_and_the_command() -> None:
    ev = e.KillTaskProcess(instance="0-7", task="extract", attempt=2, reason="workflow stopped")
    assert set_fields(row(TI, ev, src(command="stop"))) == {
        "instance": "0-7", "task": "extract", "attempt": 2, "kill_requested_at": AT, "kill_command": "stop",
        "kill_reason": "workflow stopped", "updated_at": AT,
    }


def test_kill_confirmed_sets_exit_code_and_time_only() -> None:
    ev = e.KillConfirmed(instance="0-7", task="extract", attempt=2, exit_code=-15)
    assert set_fields(row(TI, ev)) == {
        "instance": "0-7", "task": "extract", "attempt": 2, "exit_code": -15, "kill_confirmed_at": AT,
        "updated_at": AT,
    }


def test_timeout_and_dependency_checks() -> None:
    r = row(TI, e.TaskTimedOut(instance="0-7", task="extract", attempt=1, strategy="FAILED"))
    assert (r["timed_out_at"], r["reason"]) == (AT, "timed out (strategy FAILED)")
    r = row(TI, e.DependentChecked(instance="0-7", task="wait", result="WAITING", detail="etl/today=WAITING"))
    assert (r["attempt"], r["reason"]) == (0, "dependency WAITING: etl/today=WAITING")


# ---------------------------------------------------------------------------- workflows

def test_workflow_instance_lifecycle() -> None:
    wi = workflow_instances.MODEL
    started = row(wi, e.WorkflowStarted(instance="0-7", workflow="etl", version=2, base_time=5, params={"a": "1"}))
    assert set_fields(started) == {
        "instance": "0-7", "workflow": "etl", "version": 2, "base_time": 5, "params": b'{"a":"1"}',
        "started_at": AT, "updated_at": AT, "command_type": "START_PROCESS",
    }
    changed = row(wi, e.WorkflowStateChanged(instance="0-7", state="READY_STOP", reason="stop requested"))
    assert set_fields(changed) == {"instance": "0-7", "state": "READY_STOP", "reason": "stop requested",
                                   "updated_at": AT}
    finished = row(wi, e.WorkflowFinished(instance="0-7", workflow="etl", state="STOP", base_time=5,
                                          task_states={"extract": "KILL"}))
    assert (finished["state"], finished["ended_at"], finished["task_states"]) == ("STOP", AT, b'{"extract":"KILL"}')
    assert finished["started_at"] is None  # FIRST keeps the start's


def test_definitions_and_release_state() -> None:
    defined = e.WorkflowDefined(workflow="etl_daily", version=3, online=False, definition=ETL)
    d = row(workflow_definitions.MODEL, defined)
    assert (d["workflow"], d["version"], d["defined_at"], d["task_count"]) == ("etl_daily", 3, AT, 3)
    assert msgspec.json.decode(d["definition"])["tasks"][0]["name"] == "extract"  # type: ignore[arg-type]
    assert set_fields(row(workflows.MODEL, defined)) == {
        "workflow": "etl_daily", "latest_version": 3, "online": False, "defined_at": AT, "updated_at": AT,
    }
    released = row(workflows.MODEL, e.ReleaseStateChanged(workflow="etl_daily", online=True))
    assert set_fields(released) == {"workflow": "etl_daily", "online": True, "updated_at": AT}


# ---------------------------------------------------------------------------- timers

def test_timers_set_is_a_row_and_cancel_or_fire_deletes_the_key() -> None:
    tm = timers.MODEL
    assert row(tm, e.TimerSet(instance="0-7", task="wait", kind="DEPENDENT_CHECK", due=AT + 10_000)) == {
        "instance": "0-7", "task": "wait", "kind": "DEPENDENT_CHECK", "due": AT + 10_000, "set_at": AT,
    }
    for gone in (
        e.TimerCancelled(instance="0-7", task="wait", kind="DEPENDENT_CHECK", reason="task killed"),
        e.TimerFired(instance="0-7", task="wait", kind="DEPENDENT_CHECK", due=AT),
    ):
        assert tm.on_event[type(gone)](src(), 0, gone) == Delete(("0-7", "wait", "DEPENDENT_CHECK"))


# ---------------------------------------------------------------------------- raw logs

def test_events_log_stages_one_row_per_batch_with_the_events_as_a_json_array() -> None:
    batch = EventBatch(offset=40, at=AT, command="stop", events=[
        e.WorkflowStateChanged(instance="0-7", state="READY_STOP"),
        e.TimerCancelled(instance="0-7", task="wait", kind="DEPENDENT_CHECK"),
    ])
    model = events_log.MODEL
    assert model.on_batch is not None
    staged = model.as_dict(model.on_batch(src(command="stop"), 0, batch))  # type: ignore[arg-type]
    assert staged == {
        "partition": 0, "event_offset": 100, "command_offset": 40, "time": AT, "command": "stop",
        "events": msgspec.json.encode(batch.events),
    }
    assert model.on_batch(src(), 0, EventBatch(offset=41, at=AT, command="heartbeat", events=[])) is None


def test_commands_log_row_and_unreadable_record() -> None:
    model = commands_log.MODEL
    cmd = c.KillTask(at=AT, instance="0-7", task="extract")
    source = Source("commands", 0, 40, 40, AT, "kill_task")
    assert model.as_dict(model.on_command[c.KillTask](source, 0, cmd)) == {  # type: ignore[arg-type]
        "partition": 0, "command_offset": 40, "time": AT, "type": "kill_task", "instance": "0-7",
        "task": "extract", "workflow": None, "payload": msgspec.json.encode(cmd), "error": None,
    }
    define = c.DefineWorkflow(at=AT, definition=ETL)
    assert model.as_dict(model.on_command[c.DefineWorkflow](source, 0, define))["workflow"] == "etl_daily"  # type: ignore[arg-type]
    bad = model.as_dict(model.on_command[Undecodable](source, 0, Undecodable("CRC mismatch")))  # type: ignore[arg-type]
    assert (bad["type"], bad["payload"], bad["error"]) == ("?", None, "CRC mismatch")


def test_every_event_and_command_type_reaches_the_raw_logs() -> None:
    assert set(get_args(c.Command)) | {Undecodable} == set(commands_log.MODEL.on_command)
    assert events_log.MODEL.on_batch is not None


# ---------------------------------------------------------------------------- building blocks

def test_fragment_maker_places_values_by_name() -> None:
    cols = (Column("a", "VARCHAR", ""), Column("b", "BIGINT", ""), Column("c", "JSON", ""))
    assert fragment_maker(cols, "c", "a")("x", "y") == ("y", None, "x")
    with pytest.raises(ValueError):
        fragment_maker(cols, "nope")
    with pytest.raises(ValueError):
        fragment_maker(cols, "a", "a")


def test_read_model_validation() -> None:
    with pytest.raises(ValueError, match="key columns"):
        ReadModel("t", "", (Column("a", "VARCHAR", ""),), key=("b",))
    with pytest.raises(ValueError, match="type"):
        Column("a", "TEXT", "")


def test_the_readme_documents_every_table_column_and_view() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for model in TABLES:
        section = readme.split(f"#### `{model.name}`", 1)
        assert len(section) == 2, f"no section for {model.name}"
        body = section[1].split("\n#### ", 1)[0]
        for name in [col.name for col in model.columns] + [g.name for g in model.generated]:
            assert f"| `{name}` |" in body, f"{model.name}.{name} is not documented"
    for view in VIEWS:
        assert f"| `{view.name}` |" in readme, f"view {view.name} is not documented"


def test_backfill_rows_follow_its_events() -> None:
    from projections import backfills

    bf = backfills.MODEL
    started = row(bf, e.BackfillStarted(backfill="0-3-backfill", workflow="etl", total=30, first=1, last=2,
                                        parallel=4, dependents=["report"]))
    assert set_fields(started) == {
        "backfill": "0-3-backfill", "workflow": "etl", "state": "RUNNING_EXECUTION", "total": 30, "succeeded": 0,
        "failed": 0, "first_date": 1, "last_date": 2, "parallel": 4, "reverse": False,
        "dependents": b'["report"]', "started_at": AT, "updated_at": AT,
    }
    date = row(bf, e.BackfillDate(backfill="0-3-backfill", date=1, state="FAILURE", succeeded=2, failed=1, total=30))
    assert set_fields(date) == {"backfill": "0-3-backfill", "succeeded": 2, "failed": 1, "updated_at": AT}
    done = row(bf, e.BackfillFinished(backfill="0-3-backfill", workflow="etl", state="STOP", succeeded=2, failed=1,
                                      total=30, reason="stopped by user"))
    assert (done["state"], done["reason"], done["ended_at"], done["started_at"]) == ("STOP", "stopped by user", AT,
                                                                                     None)
