"""Schedules in the fold, driven by chosen CheckDue times (no sleeping)."""

from __future__ import annotations

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.schedules import SCHEDULE, upcoming
from tests.core.helpers import SECOND, T0, Master, of, shell, wf

MINUTE = 60 * SECOND


def _master(overlap: str = "SKIP", catchup: int = 0, cron: str = "0 * * * * ?", **kw: object) -> Master:
    m = Master()
    m.define(wf("etl", shell("load")))
    events = m.send(c.SetSchedule(workflow="etl", cron=cron, overlap=overlap, catchup_window=catchup, **kw))  # type: ignore[arg-type]
    assert not of(events, e.CommandRejected), events
    return m


def _fires(events: list[e.Event], outcome: str | None = None) -> list[e.ScheduleFired]:
    return [f for f in of(events, e.ScheduleFired) if outcome is None or f.outcome == outcome]


def _at(m: Master, t: int) -> list[e.Event]:
    m.now = t
    return m.send(c.CheckDue(now=t))


def _entry(m: Master) -> int | None:
    return m.timers().get(("schedule", "etl", SCHEDULE))


def test_the_next_fire_is_one_entry_and_a_fire_starts_an_instance_at_the_nominal_time() -> None:
    m = _master()
    assert _entry(m) == T0 + MINUTE
    events = _at(m, T0 + MINUTE + 250)  # the tick comes a little late
    (fired,) = _fires(events, "STARTED")
    started = of(events, e.WorkflowStarted)[0]
    assert fired.nominal == T0 + MINUTE and fired.instance == started.instance
    assert started.schedule_time == T0 + MINUTE and started.command_type == "SCHEDULER"
    assert m.state.instances[started.instance].base_time == T0 + MINUTE
    assert _entry(m) == T0 + 2 * MINUTE
    assert len([k for k in m.timers() if k[2] == SCHEDULE]) == 1


def test_a_long_outage_runs_only_the_latest_missed_fire_by_default_and_records_the_others() -> None:
    m = _master(overlap="ALLOW_ALL")
    events = _at(m, T0 + 5 * MINUTE + 30 * SECOND)
    skipped, started = _fires(events, "SKIPPED"), _fires(events, "STARTED")
    assert [f.nominal for f in skipped] == [T0 + k * MINUTE for k in (1, 2, 3, 4)]
    assert all("catch-up window" in f.reason for f in skipped)
    assert [f.nominal for f in started] == [T0 + 5 * MINUTE]
    assert _entry(m) == T0 + 6 * MINUTE


def test_a_catchup_window_runs_the_missed_fires_inside_it() -> None:
    m = _master(overlap="ALLOW_ALL", catchup=150 * SECOND)
    events = _at(m, T0 + 5 * MINUTE + 30 * SECOND)
    assert [f.nominal for f in _fires(events, "SKIPPED")] == [T0 + k * MINUTE for k in (1, 2)]
    assert [f.nominal for f in _fires(events, "STARTED")] == [T0 + k * MINUTE for k in (3, 4, 5)]
    ids = [ev.instance for ev in of(events, e.WorkflowStarted)]
    assert len(set(ids)) == 3  # one step, three distinct instance ids


def test_unlimited_catchup_and_a_long_skipped_run_is_one_range_event() -> None:
    m = _master(overlap="ALLOW_ALL", catchup=-1, cron="* * * * * ?")
    events = _at(m, T0 + 3 * SECOND)
    assert [f.nominal for f in _fires(events, "STARTED")] == [T0 + k * SECOND for k in (1, 2, 3)]
    m2 = _master(cron="* * * * * ?")
    events = _at(m2, T0 + 3_600 * SECOND)  # an hour of per-second fires missed
    (skipped,) = _fires(events, "SKIPPED")
    assert skipped.nominal == T0 + SECOND and skipped.last == T0 + 3_599 * SECOND and skipped.count == 3_599
    assert [f.nominal for f in _fires(events, "STARTED")] == [T0 + 3_600 * SECOND]


@pytest.mark.parametrize(
    ("overlap", "outcomes"),
    [
        ("SKIP", ["SKIPPED", "SKIPPED"]),
        ("SERIAL_DISCARD", ["SKIPPED", "SKIPPED"]),
        ("BUFFER_ONE", ["BUFFERED", "SKIPPED"]),
        ("BUFFER_ALL", ["BUFFERED", "BUFFERED"]),
        ("SERIAL_WAIT", ["BUFFERED", "BUFFERED"]),
        ("ALLOW_ALL", ["STARTED", "STARTED"]),
        ("PARALLEL", ["STARTED", "STARTED"]),
    ],
)
def test_overlap_policies_while_the_previous_instance_runs(overlap: str, outcomes: list[str]) -> None:
    m = _master(overlap=overlap)
    first = of(_at(m, T0 + MINUTE), e.WorkflowStarted)[0].instance
    got = [_fires(_at(m, T0 + k * MINUTE))[0].outcome for k in (2, 3)]
    assert got == outcomes
    # the running one finishes: a buffered fire starts then, with its own nominal time
    events = m.run_ok(first, "load")
    started = _fires(events, "STARTED")
    if outcomes[0] == "BUFFERED":
        assert [f.nominal for f in started] == [T0 + 2 * MINUTE]
        assert of(events, e.WorkflowStarted)[0].schedule_time == T0 + 2 * MINUTE
    else:
        assert started == []


def test_a_rerun_of_a_scheduled_instance_counts_for_the_overlap_policy_again() -> None:
    m = _master(overlap="SERIAL_WAIT")
    first = of(_at(m, T0 + MINUTE), e.WorkflowStarted)[0].instance
    m.run_ok(first, "load")
    assert not of(m.send(c.RerunWorkflow(instance=first)), e.CommandRejected)
    assert _fires(_at(m, T0 + 2 * MINUTE))[0].outcome == "BUFFERED"  # waits for the rerun
    events = m.run_ok(first, "load", attempt=2)
    assert [f.nominal for f in _fires(events, "STARTED")] == [T0 + 2 * MINUTE]


def test_cancel_other_stops_the_running_one_then_starts() -> None:
    m = _master(overlap="SERIAL_PRIORITY")
    first = of(_at(m, T0 + MINUTE), e.WorkflowStarted)[0].instance
    m.started(first, "load")
    events = _at(m, T0 + 2 * MINUTE)
    assert _fires(events)[0].outcome == "BUFFERED"
    assert m.wf_state(first) == "READY_STOP"
    assert of(events, e.KillTaskProcess)
    events = m.finished(first, "load", exit_code=-15, killed=True)
    assert m.wf_state(first) == "STOP"
    (started,) = _fires(events, "STARTED")
    assert started.nominal == T0 + 2 * MINUTE


def test_offline_and_delete_remove_the_entry_in_the_same_step() -> None:
    m = _master(overlap="BUFFER_ALL")
    of(_at(m, T0 + MINUTE), e.WorkflowStarted)
    _at(m, T0 + 2 * MINUTE)  # buffered behind the running one
    events = m.send(c.SetScheduleState(workflow="etl", online=False))
    assert _entry(m) is None and of(events, e.TimerCancelled)
    assert [f.reason for f in _fires(events)] == ["buffered; schedule put OFFLINE"]
    assert _fires(_at(m, T0 + 10 * MINUTE)) == []
    m.send(c.SetScheduleState(workflow="etl", online=True))
    assert _entry(m) == T0 + 11 * MINUTE  # from now on: offline time is not "missed"
    events = m.send(c.DeleteSchedule(workflow="etl"))
    assert _entry(m) is None and "etl" not in m.state.schedules and of(events, e.TimerCancelled)


def test_taking_the_workflow_offline_takes_its_schedule_offline() -> None:
    m = _master()
    events = m.send(c.SetReleaseState(workflow="etl", online=False))
    assert _entry(m) is None and of(events, e.ScheduleStateChanged)[0].online is False
    rejected = m.send(c.SetScheduleState(workflow="etl", online=True))
    assert "is OFFLINE: release it" in of(rejected, e.CommandRejected)[0].reason


def test_start_and_end_bound_the_fires_and_trigger_fires_now() -> None:
    m = _master(start=T0 + 3 * MINUTE, end=T0 + 4 * MINUTE)
    assert _entry(m) == T0 + 3 * MINUTE
    _at(m, T0 + 3 * MINUTE)
    assert _entry(m) == T0 + 4 * MINUTE
    m.run_ok(of(m.log, e.WorkflowStarted)[-1].instance, "load")
    _at(m, T0 + 4 * MINUTE)
    assert _entry(m) is None  # past the end: no entry
    m.run_ok(of(m.log, e.WorkflowStarted)[-1].instance, "load")
    m.now = T0 + 10 * MINUTE + 400
    events = m.send(c.TriggerSchedule(workflow="etl"))
    assert of(events, e.WorkflowStarted)[0].schedule_time == T0 + 10 * MINUTE


def test_the_schedule_zone_decides_fires_and_time_parameters() -> None:
    m = _master(cron="0 0 2 * * ?", timezone="Asia/Shanghai")
    assert _entry(m) == T0 + 8 * 3_600 * SECOND  # 02:00 CST on 2024-03-05 = 18:00 UTC on the 4th
    events = _at(m, T0 + 8 * 3_600 * SECOND)
    d = of(events, e.DispatchTask)[0]
    assert d.env["system_biz_curdate"] == "20240305" and d.env["system_biz_date"] == "20240304"
    assert upcoming(m.state.schedules["etl"], 2, T0) == [T0 + 8 * 3_600 * SECOND, T0 + 32 * 3_600 * SECOND]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cron": "61 * * * *"}, "cron: minute: 61 is out of range"),
        ({"timezone": "Mars/Base"}, "timezone: unknown time zone"),
        ({"overlap": "SOMETIMES"}, "overlap: unknown policy"),
        ({"start": T0, "end": T0 - 1}, "end is before start"),
        ({"workflow": "ghost"}, "unknown workflow 'ghost'"),
        ({"params": {"X": "$[qq]"}}, "parameter 'X'"),
    ],
)
def test_bad_schedules_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    m = Master()
    m.define(wf("etl", shell("load")))
    fields: dict[str, object] = {"workflow": "etl", "cron": "@daily", **change}
    (rejected,) = m.send(c.SetSchedule(**fields))  # type: ignore[arg-type]
    assert isinstance(rejected, e.CommandRejected) and reason in rejected.reason, rejected
    assert not m.state.schedules and not m.timers()
