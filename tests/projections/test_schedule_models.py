"""The `schedules` and `schedule_fires` read models as plain functions of the events."""

from __future__ import annotations

from easysched_es.core import events as e
from projections import schedule_fires, schedules
from projections.model import Delete
from tests.projections.test_mappings import AT, row, set_fields


def test_a_schedule_row_follows_set_arm_and_offline() -> None:
    m = schedules.MODEL
    r = set_fields(row(m, e.ScheduleSet(workflow="etl", cron="0 0 2 * * ?", timezone="Asia/Shanghai",
                                        overlap="BUFFER_ALL", catchup_window=0, online=True)))
    assert r == {"workflow": "etl", "cron": "0 0 2 * * ?", "timezone": "Asia/Shanghai", "overlap": "BUFFER_ALL",
                 "catchup_window_ms": 0, "online": True, "created_at": AT, "updated_at": AT}
    armed = set_fields(row(m, e.TimerSet(instance="schedule", task="etl", kind="SCHEDULE", due=AT + 5)))
    assert (armed["next_fire"], armed["armed"]) == (AT + 5, True)
    assert set_fields(row(m, e.TimerCancelled(instance="schedule", task="etl", kind="SCHEDULE")))["armed"] is False
    assert m.on_event[e.TimerSet](None, 0, e.TimerSet(instance="0-1", task="t", kind="RETRY", due=1)) is None  # type: ignore[arg-type]
    gone = m.on_event[e.ScheduleStateChanged](None, 0, e.ScheduleStateChanged(  # type: ignore[arg-type]
        workflow="etl", online=False, deleted=True))
    assert gone == Delete(("etl",))


def test_a_fire_row_has_its_nominal_time_outcome_and_lateness() -> None:
    r = set_fields(row(schedule_fires.MODEL, e.ScheduleFired(workflow="etl", nominal=AT - 40, outcome="STARTED",
                                                            instance="0-9")))
    assert r == {"workflow": "etl", "nominal": AT - 40, "outcome": "STARTED", "instance": "0-9", "fired_at": AT,
                 "decided_at": AT, "lateness_ms": 40, "count": 1}
