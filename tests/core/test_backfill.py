"""Backfill (COMPLEMENT_DATA) in the fold, driven by chosen commands and times (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from easysched_es.core import backfill as bfm
from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import State
from easysched_es.core.step import step
from tests.core.helpers import Master, dep, item, of, shell, wf


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _master(*defs: object, **kw: object) -> Master:
    m = Master()
    for d in defs or (wf("etl", shell("load"), **kw),):
        m.define(d)  # type: ignore[arg-type]
    return m


def _backfill(m: Master, **kw: object) -> tuple[str, list[e.Event]]:
    kw.setdefault("workflow", "etl")
    events = m.send(c.StartBackfill(**kw))  # type: ignore[arg-type]
    assert not of(events, e.CommandRejected), events
    (started,) = of(events, e.BackfillStarted)
    return started.backfill, events


def _running(m: Master, bf: str) -> list[str]:
    return [i for r in m.state.backfills[bf].inflight for i in r.instances]


def _finish(m: Master, inst: str, exit_code: int = 0) -> list[e.Event]:
    return m.started(inst, "load") + m.finished(inst, "load", exit_code=exit_code)


def _dates(events: list[e.Event]) -> list[int | None]:
    return [ev.schedule_time for ev in of(events, e.WorkflowStarted)]


def test_serial_runs_one_date_at_a_time_with_the_date_as_schedule_time_and_its_time_parameters() -> None:
    m = _master(wf("etl", shell("load"), params={"DAY": "$[yyyyMMdd]"}))
    bf, events = _backfill(m, from_date="2026-11-01", to_date="2026-11-03")
    assert bf == f"0-{m.offset}-backfill"
    (started,) = of(events, e.WorkflowStarted)
    assert (started.schedule_time, started.command_type, started.backfill) == (ms("2026-11-01"), "COMPLEMENT_DATA", bf)
    assert started.params["DAY"] == "20261101"
    inst = m.state.instances[started.instance]
    assert inst.env["system_biz_date"] == "20261031" and inst.backfill == bf
    seen = [started.schedule_time]
    while _running(m, bf):
        (inst_id,) = _running(m, bf)
        events = _finish(m, inst_id)
        seen += _dates(events)
    assert seen == [ms("2026-11-01"), ms("2026-11-02"), ms("2026-11-03")]
    (done,) = of(m.log, e.BackfillFinished)
    assert (done.state, done.succeeded, done.failed, done.total) == ("SUCCESS", 3, 0, 3)
    assert [d.state for d in of(m.log, e.BackfillDate)] == ["SUCCESS"] * 3


def test_parallel_keeps_at_most_n_in_flight_and_reverse_runs_descending() -> None:
    m = _master()
    bf, events = _backfill(m, from_date="2026-11-01", to_date="2026-11-10", parallel=3, reverse=True)
    assert _dates(events) == [ms("2026-11-10"), ms("2026-11-09"), ms("2026-11-08")]
    order = _dates(events)
    while _running(m, bf):
        assert len(_running(m, bf)) <= 3
        order += _dates(_finish(m, _running(m, bf)[-1]))
    assert order == sorted(order, reverse=True) and len(order) == 10 and len(set(order)) == 10
    assert m.state.backfills[bf].state == "SUCCESS"


def test_the_schedule_cron_decides_the_dates_in_its_zone() -> None:
    m = _master()
    m.send(c.SetSchedule(workflow="etl", cron="0 0 2 ? * MON *", timezone="Asia/Shanghai"))
    bf, events = _backfill(m, from_date="2026-11-01", to_date="2026-11-30", parallel=10)
    # Mondays of November 2026 at 02:00 Shanghai (18:00 UTC the day before).
    assert _dates(events) == [ms(f"2026-11-{d:02d} 18:00") for d in (1, 8, 15, 22, 29)]
    assert m.state.instances[of(events, e.WorkflowStarted)[0].instance].zone == "Asia/Shanghai"
    assert m.state.backfills[bf].total == 5


def test_a_date_list_runs_distinct_dates_in_order() -> None:
    m = _master()
    _, events = _backfill(m, dates=["2026-03-05", "2026-01-02", "2026-03-05 00:00:00"], parallel=5)
    assert _dates(events) == [ms("2026-01-02"), ms("2026-03-05")]


def test_a_ten_year_daily_backfill_holds_only_its_running_dates() -> None:
    m = _master()
    bf, _ = _backfill(m, from_date="2016-01-01", to_date="2025-12-31", parallel=8)
    b = m.state.backfills[bf]
    assert b.total == 3653 and len(b.inflight) == 8 and len(m.state.instances) == 8
    assert len(encode(b)) < 1000  # the cursor and 8 dates in flight, not 3,653 dates


def test_a_failure_in_the_middle_goes_on_under_continue_and_stops_taking_dates_under_end() -> None:
    m = _master()
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-04")
    for code in (0, 1, 0, 0):
        _finish(m, _running(m, bf)[0], exit_code=code)
    (done,) = of(m.log, e.BackfillFinished)
    assert (done.state, done.succeeded, done.failed) == ("FAILURE", 3, 1)

    m = _master(failure_strategy="END")
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-04")
    _finish(m, _running(m, bf)[0])
    events = _finish(m, _running(m, bf)[0], exit_code=1)
    assert not of(events, e.WorkflowStarted) and not _running(m, bf)
    (done,) = of(events, e.BackfillFinished)
    assert (done.state, done.succeeded, done.failed, m.state.backfills[bf].taken) == ("FAILURE", 1, 1, 2)
    assert "failure strategy is END" in done.reason


def test_stop_stops_the_backfill_and_its_instances_in_the_same_step_and_nothing_starts_afterwards() -> None:
    m = _master()
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-30", parallel=2)
    first, second = _running(m, bf)
    m.started(first, "load")
    events = m.send(c.StopWorkflow(instance=bf))
    assert of(events, e.BackfillFinished)[0].state == "STOP"
    assert of(events, e.KillTaskProcess)  # the running one's process is killed
    assert m.wf_state(second) == m.wf_state(first) == "READY_STOP"  # until the worker confirms the kills
    events = m.finished(first, "load", exit_code=-15, killed=True) + m.finished(second, "load", killed=True)
    events += m.tick(86_400)
    assert not of(events, e.WorkflowStarted) and m.wf_state(first) == m.wf_state(second) == "STOP"
    assert not _running(m, bf)
    rejected = m.send(c.StopWorkflow(instance=bf))
    assert "already STOP" in of(rejected, e.CommandRejected)[0].reason


def test_dependents_run_for_each_date_after_the_instance_they_depend_on() -> None:
    report = wf("report", shell("prep"), dep("wait_etl", item("etl")), shell("publish", upstream=["wait_etl"]))
    m = _master(wf("etl", shell("load")), report)
    bf, events = _backfill(m, from_date="2026-11-01", to_date="2026-11-02", dependents=True)
    assert of(events, e.BackfillStarted)[0].dependents == ["report"]
    (etl1,) = _running(m, bf)
    events = _finish(m, etl1)
    (rep,) = of(events, e.WorkflowStarted)
    assert (rep.workflow, rep.schedule_time, rep.only) == ("report", ms("2026-11-01"), ["wait_etl", "publish"])
    assert not of(events, e.WorkflowStarted, workflow="etl")  # the date still holds the one slot
    # The DEPENDENT task finds the backfilled etl instance of its day at once.
    assert m.task(rep.instance, "wait_etl").state == "SUCCESS"
    events = m.run_ok(rep.instance, "publish")
    assert of(events, e.BackfillDate)[0].state == "SUCCESS"
    assert _dates(events) == [ms("2026-11-02")]


def test_instances_that_end_at_once_do_not_recurse_through_the_dates() -> None:
    # A DEPENDENT on a month whose upstream failed decides FAILED inside its instance's start.
    m = _master(wf("etl", dep("check", item("up", cycle="MONTH", date_value="thisMonth"))))
    for year in range(2016, 2026):
        for month in range(1, 13):
            m.send(c.UpstreamFinished(workflow="up", instance=f"9-{year}{month}", state="FAILURE",
                                      base_time=ms(f"{year}-{month:02d}-01")))
    _, events = _backfill(m, from_date="2016-01-01", to_date="2025-12-31")
    assert len(of(events, e.WorkflowStarted)) == 3653
    assert of(events, e.BackfillFinished)[0].failed == 3653

def test_max_active_instances_makes_dates_wait_inside_their_slot() -> None:
    m = _master(max_active_instances=1)
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-03", parallel=3)
    states = [m.wf_state(i) for i in _running(m, bf)]
    assert states == ["RUNNING_EXECUTION", "SERIAL_WAIT", "SERIAL_WAIT"]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"workflow": "nope", "from_date": "2026-01-01", "to_date": "2026-01-02"}, "workflow: unknown workflow"),
    ({"workflow": "", "from_date": "2026-01-01", "to_date": "2026-01-02"}, "workflow: unknown workflow"),
    ({"from_date": "2026-02-01", "to_date": "2026-01-01"}, "from_date: '2026-02-01' is after"),
    ({"from_date": "2026-13-01", "to_date": "2026-01-01"}, "from_date: '2026-13-01' is not a date"),
    ({"from_date": "2026-01-01"}, "from_date/to_date: give --from and --to"),
    ({}, "from_date/to_date"),
    ({"from_date": "1970-01-01", "to_date": "9999-12-31"}, "at most 10000"),
    ({"from_date": "1000-01-01", "to_date": "2026-01-01"}, "from_date: '1000-01-01' is out of range"),
    ({"from_date": "2026-01-01", "to_date": "2026-01-02", "parallel": 0}, "parallel: 0 is out of range"),
    ({"from_date": "2026-01-01", "to_date": "2026-01-02", "parallel": -3}, "parallel: -3"),
    ({"from_date": "2026-01-01", "to_date": "2026-01-02", "parallel": 10**6}, "parallel"),
    ({"from_date": "2026-01-01 10:00:00", "to_date": "2026-01-01 09:00:00"}, "is after"),
    ({"from_date": "2026-01-01T00:00:00+02:00", "to_date": "2026-01-02"}, "UTC offset"),
    ({"dates": ["2026-01-01"], "from_date": "2026-01-01"}, "not both"),
    ({"dates": ["yesterday"]}, "dates: 'yesterday' is not a date"),
    ({"dates": ["2026-01-01"] * (bfm.MAX_DATES + 1)}, "at most 10000"),
    ({"from_date": "2026-01-01", "to_date": "2026-01-02", "timezone": "Mars/Base"}, "timezone: unknown"),
    ({"from_date": "2026-01-01", "to_date": "2026-01-02", "params": {"X": "$[yyyyMMdd+]"}}, "params:"),
])
def test_hostile_backfills_are_refused_at_the_door_naming_the_field(fields: dict[str, object], reason: str) -> None:
    m = _master()
    fields.setdefault("workflow", "etl")
    before = encode(m.state.snapshot().instances)
    events = m.send(c.StartBackfill(**fields))  # type: ignore[arg-type]
    (rejected,) = of(events, e.CommandRejected)
    assert reason in rejected.reason, rejected.reason
    assert encode(m.state.snapshot().instances) == before and not m.state.backfills


def test_an_empty_cron_expansion_and_an_offline_workflow_are_refused() -> None:
    m = _master()
    m.send(c.SetSchedule(workflow="etl", cron="0 0 2 29 2 ? *"))
    events = m.send(c.StartBackfill(workflow="etl", from_date="2026-01-01", to_date="2026-12-31"))
    assert "does not fire between" in of(events, e.CommandRejected)[0].reason
    m.send(c.SetReleaseState(workflow="etl", online=False))
    events = m.send(c.StartBackfill(workflow="etl", from_date="2024-01-01", to_date="2024-12-31"))
    assert "OFFLINE" in of(events, e.CommandRejected)[0].reason


def test_replay_and_snapshot_restore_give_the_same_bytes() -> None:
    m = _master()
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-06", parallel=2, reverse=True)
    _finish(m, _running(m, bf)[0])
    restored = State.restore(decode_snapshot(encode(m.state.snapshot())))
    assert encode(restored.snapshot()) == encode(m.state.snapshot())
    m2 = _master()
    bf2, _ = _backfill(m2, from_date="2026-11-01", to_date="2026-11-06", parallel=2, reverse=True)
    _finish(m2, _running(m2, bf2)[0])
    assert m2.snapshot_bytes() == m.snapshot_bytes()
    # The restored state goes on exactly like the original.
    inst = _running(m, bf)[0]
    cmd = c.TaskStarted(instance=inst, task="load", attempt=1, pid=1, worker="w1", at=m.now)
    assert encode(step(restored, cmd, m.offset + 1)[1]) == encode(step(m.state, cmd, m.offset + 1)[1])


def test_retention_removes_an_ended_backfill_after_its_workflows_period() -> None:
    m = _master(retention_days=1)
    bf, _ = _backfill(m, dates=["2026-11-01"])
    _finish(m, _running(m, bf)[0])
    ended = m.state.backfills[bf].ended
    assert ended is not None
    assert of(m.send(c.ApplyRetention(now=ended + 3_600_000)), e.InstancesRetired)[0].backfills == []
    (retired,) = of(m.send(c.ApplyRetention(now=ended + 86_400_000)), e.InstancesRetired)
    assert retired.backfills == [bf] and bf not in m.state.backfills


def test_a_workflow_taken_offline_stops_the_backfill_taking_dates() -> None:
    m = _master()
    bf, _ = _backfill(m, from_date="2026-11-01", to_date="2026-11-03")
    m.send(c.SetReleaseState(workflow="etl", online=False))
    events = _finish(m, _running(m, bf)[0])
    assert not of(events, e.WorkflowStarted)
    (done,) = of(events, e.BackfillFinished)
    assert (done.state, done.reason, done.succeeded) == ("FAILURE", "workflow etl is OFFLINE", 1)


def test_a_dependent_redefined_without_its_dependent_task_is_passed_over() -> None:
    report = wf("report", dep("wait_etl", item("etl")), shell("publish", upstream=["wait_etl"]))
    m = _master(wf("etl", shell("load")), report)
    bf, _ = _backfill(m, dates=["2026-11-01"], dependents=True)
    m.define(wf("report", shell("publish")))  # no longer depends on etl
    events = _finish(m, _running(m, bf)[0])
    assert not of(events, e.WorkflowStarted, workflow="report")
    assert of(events, e.BackfillFinished)[0].state == "SUCCESS"


def test_dependents_are_those_of_the_schedules_cycle_as_dolphinscheduler_checks() -> None:
    daily = wf("daily_report", dep("wait", item("etl", cycle="DAY")), shell("send", upstream=["wait"]))
    hourly = wf("hourly_report", dep("wait", item("etl", cycle="HOUR", date_value="currentHour")))
    m = _master(wf("etl", shell("load")), daily, hourly)
    _, events = _backfill(m, dates=["2026-11-01"], dependents=True)
    assert of(events, e.BackfillStarted)[0].dependents == ["daily_report"]  # daily dates: the DAY cycle
    m.send(c.SetSchedule(workflow="etl", cron="0 0 * * * ?"))  # hourly
    _, events = _backfill(m, from_date="2026-11-01 00:00:00", to_date="2026-11-01 01:00:00", dependents=True)
    assert of(events, e.BackfillStarted)[0].dependents == ["hourly_report"]
