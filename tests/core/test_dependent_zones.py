"""DEPENDENT date windows in the instance's zone: table tests (DST days included) and the fold."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import DATE_VALUES
from easysched_es.core.dependent import windows
from easysched_es.core.zones import ZoneError
from tests.core.helpers import Master, dep, item, of, shell, wf

HOUR = 3_600_000


def utc(text: str) -> int:
    """'2026-11-23T16:00' (UTC) -> epoch milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# (zone, date_value, base (UTC), first window start (UTC), last window end (UTC), windows, hours in
# the first window). A zoned day is [local midnight, next local midnight) converted to UTC.
CASES = [
    # 2026-11-24 00:00 Shanghai (UTC+8, no DST) is 2026-11-23T16:00Z
    ("Asia/Shanghai", "today", "2026-11-23T16:00", "2026-11-23T16:00", "2026-11-24T16:00", 1, 24),
    ("Asia/Shanghai", "today", "2026-11-24T15:59", "2026-11-23T16:00", "2026-11-24T16:00", 1, 24),
    ("Asia/Shanghai", "last1Days", "2026-11-23T16:00", "2026-11-22T16:00", "2026-11-23T16:00", 1, 24),
    ("Asia/Shanghai", "last7Days", "2026-11-23T16:00", "2026-11-16T16:00", "2026-11-23T16:00", 7, 24),
    ("Asia/Shanghai", "currentHour", "2026-11-23T16:30", "2026-11-23T16:00", "2026-11-23T17:00", 1, 1),
    # last24Hours: 24 hourly windows ending at 01:00 local of the base day
    ("Asia/Shanghai", "last24Hours", "2026-11-24T03:00", "2026-11-22T17:00", "2026-11-23T17:00", 24, 1),
    # 2026-11-24 is a Tuesday in Shanghai (the UTC instant is still Monday the 23rd)
    ("Asia/Shanghai", "thisWeek", "2026-11-23T16:00", "2026-11-22T16:00", "2026-11-24T16:00", 2, 24),
    ("Asia/Shanghai", "thisMonthBegin", "2026-11-30T17:00", "2026-11-30T16:00", "2026-12-01T16:00", 1, 24),
    # a half-hour zone: hours are floored on the local clock
    ("Asia/Kolkata", "currentHour", "2026-01-05T10:50", "2026-01-05T10:30", "2026-01-05T11:30", 1, 1),
    # DST: Paris springs forward on 2026-03-29 (a 23-hour day), falls back on 2026-10-25 (25 hours)
    ("Europe/Paris", "today", "2026-03-29T12:00", "2026-03-28T23:00", "2026-03-29T22:00", 1, 23),
    ("Europe/Paris", "today", "2026-10-25T12:00", "2026-10-24T22:00", "2026-10-25T23:00", 1, 25),
    ("Europe/Paris", "last1Days", "2026-03-30T12:00", "2026-03-28T23:00", "2026-03-29T22:00", 1, 23),
    ("Europe/Paris", "last2Days", "2026-03-30T12:00", "2026-03-27T23:00", "2026-03-29T22:00", 2, 24),
    # New York springs forward on 2026-03-08 at 02:00 local
    ("America/New_York", "today", "2026-03-08T12:00", "2026-03-08T05:00", "2026-03-09T04:00", 1, 23),
    # Santiago's clocks jump from 00:00 to 01:00 on 2026-09-06: the day starts at the jump
    ("America/Santiago", "today", "2026-09-06T12:00", "2026-09-06T04:00", "2026-09-07T03:00", 1, 23),
]


@pytest.mark.parametrize(("zone", "date_value", "base", "first", "last", "count", "hours"), CASES)
def test_zoned_windows(zone: str, date_value: str, base: str, first: str, last: str, count: int,
                       hours: int) -> None:
    got = windows(date_value, utc(base), zone)
    assert len(got) == count
    assert (got[0][0], got[-1][1]) == (utc(first), utc(last))
    assert got[0][1] - got[0][0] == hours * HOUR
    assert all(e1 == s2 for (_, e1), (s2, _) in pairwise(got)), "windows are consecutive"


@pytest.mark.parametrize("date_value", [v for values in DATE_VALUES.values() for v in values])
@pytest.mark.parametrize("base", ["2026-03-29T00:30", "2026-10-25T01:30", "2024-02-29T23:59", "2026-11-23T16:00"])
def test_no_zone_and_utc_are_the_old_utc_windows(date_value: str, base: str) -> None:
    assert windows(date_value, utc(base), "") == windows(date_value, utc(base), "UTC") == windows(date_value, utc(base))


@pytest.mark.parametrize("date_value", [v for values in DATE_VALUES.values() for v in values])
def test_zoned_windows_across_a_dst_change_are_minutes_hours_or_local_days(date_value: str) -> None:
    base = utc("2026-10-25T01:30")  # inside Paris's repeated hour
    got = windows(date_value, base, "Europe/Paris")
    assert got and {e - s for s, e in got} <= {60_000, HOUR, 23 * HOUR, 24 * HOUR, 25 * HOUR}
    assert all(e1 == s2 for (_, e1), (s2, _) in pairwise(got))


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ZoneError):
        windows("today", 0, "Mars/Base")


# ---- the fold ----------------------------------------------------------------------------

UPSTREAM_AT = utc("2026-11-23T17:00")  # 2026-11-24 01:00 in Shanghai, still the 23rd in UTC


def _flow() -> tuple[Master, str]:
    """An upstream instance (base 2026-11-23T17:00Z) that succeeded, and a `today` dependent."""
    m = Master(now=utc("2026-11-24T18:00"))
    m.define(wf("up", shell("publish")))
    m.define(wf("down", dep("wait", item("up"), check_interval=10, failure_policy="WAIT"), shell("load",
                                                                                              upstream=["wait"])))
    up = m.start("up", schedule_time=UPSTREAM_AT)
    m.run_ok(up, "publish")
    assert m.wf_state(up) == "SUCCESS"
    return m, up


def test_an_upstream_of_the_shanghai_day_satisfies_today_for_a_shanghai_instance() -> None:
    m, _ = _flow()
    inst = m.start("down", schedule_time=utc("2026-11-23T16:00"), timezone="Asia/Shanghai")  # 24th 00:00 CST
    assert m.state.instances[inst].window_zone == "Asia/Shanghai"
    assert [ev.result for ev in of(m.log, e.DependentChecked, instance=inst)] == ["SUCCESS"]
    assert m.task(inst, "wait").state == "SUCCESS"


def test_the_same_upstream_does_not_satisfy_today_of_the_24th_for_a_utc_instance() -> None:
    m, _ = _flow()
    inst = m.start("down", schedule_time=utc("2026-11-24T00:00"))
    assert m.state.instances[inst].window_zone == ""
    assert [ev.result for ev in of(m.log, e.DependentChecked, instance=inst)] == ["WAITING"]


def test_the_same_base_instant_reads_a_different_day_in_each_zone() -> None:
    m = Master(now=utc("2026-11-24T18:00"))
    m.send(c.UpstreamFinished(workflow="up", instance="3-1", state="SUCCESS", base_time=utc("2026-11-23T15:00")))
    m.define(wf("down", dep("wait", item("up"), check_interval=10, failure_policy="WAIT")))
    base = utc("2026-11-23T16:00")  # the 23rd in UTC (the upstream's day), the 24th in Shanghai
    in_utc = m.start("down", schedule_time=base)
    in_shanghai = m.start("down", schedule_time=base, timezone="Asia/Shanghai")
    assert m.task(in_utc, "wait").state == "SUCCESS"
    assert m.task(in_shanghai, "wait").state == "RUNNING_EXECUTION"  # waiting for its next check


def test_a_scheduled_instance_takes_its_windows_in_the_schedule_zone_a_manual_one_in_utc() -> None:
    m = Master(now=utc("2026-11-23T15:00"))
    m.define(wf("up", shell("publish")))
    m.define(wf("down", dep("wait", item("up"), check_interval=10, failure_policy="WAIT")))
    assert not of(m.send(c.SetSchedule(workflow="down", cron="0 0 0 * * ?", timezone="Asia/Shanghai")),
                  e.CommandRejected)
    m.now = utc("2026-11-23T16:00")  # midnight in Shanghai: the schedule fires
    m.send(c.CheckDue(now=m.now))
    fired = of(m.log, e.WorkflowStarted, workflow="down")[0].instance
    assert m.state.instances[fired].dependent_zone() == "Asia/Shanghai"
    manual = m.start("down")
    assert m.state.instances[manual].zone == "Asia/Shanghai"  # its time parameters, as before
    assert m.state.instances[manual].dependent_zone() == ""  # but its windows stay UTC without --timezone
