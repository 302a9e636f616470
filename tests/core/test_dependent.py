"""DEPENDENT maths: the windows each date value covers, and the AND/OR verdict (table tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest

from easysched_es.core.definitions import DATE_VALUES
from easysched_es.core.dependent import FAILED, SUCCESS, WAITING, combine, windows


def ms(text: str) -> int:
    """'2024-03-04 10:30' (UTC) -> epoch milliseconds; seconds and milliseconds optional."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    if len(text) == 10:
        fmt = "%Y-%m-%d"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)


MON = "2024-03-04 10:30:15"  # a Monday
SUN = "2024-03-10 23:59:59.999"  # a Sunday, last millisecond of the day
JAN1 = "2025-01-01 00:00"  # a Wednesday, first millisecond of the year
LEAP_MAR1 = "2024-03-01 12:00"  # a Friday; February 2024 has 29 days
MONTH_END = "2024-04-30 08:00"  # a Tuesday, last day of a 30-day month
YEAR_END = "2023-12-31 18:45"  # a Sunday, last day of the year
MON_JAN1 = "2024-01-01 00:00"  # a Monday that is also January 1st


# (date_value, base, first window start, last window end, number of windows). Windows are
# consecutive, equal in length and half-open: [start, end).
CASES = [
    # ---- MINUTE
    ("currentMinute", MON, "2024-03-04 10:30", "2024-03-04 10:31", 1),
    ("last1Minute", MON, "2024-03-04 10:29", "2024-03-04 10:30", 1),
    ("last5Minutes", MON, "2024-03-04 10:25", "2024-03-04 10:30", 5),
    ("last10Minutes", MON, "2024-03-04 10:20", "2024-03-04 10:30", 10),
    ("last30Minutes", MON, "2024-03-04 10:00", "2024-03-04 10:30", 30),
    ("last1Minute", JAN1, "2024-12-31 23:59", "2025-01-01 00:00", 1),
    ("last30Minutes", JAN1, "2024-12-31 23:30", "2025-01-01 00:00", 30),
    ("currentMinute", SUN, "2024-03-10 23:59", "2024-03-11 00:00", 1),
    # ---- HOUR
    ("currentHour", MON, "2024-03-04 10:00", "2024-03-04 11:00", 1),
    ("last1Hour", MON, "2024-03-04 09:00", "2024-03-04 10:00", 1),
    ("last2Hours", MON, "2024-03-04 08:00", "2024-03-04 10:00", 2),
    ("last3Hours", MON, "2024-03-04 07:00", "2024-03-04 10:00", 3),
    # DolphinScheduler's last24Hours: 01:00 of the day before to 01:00 of the base day, whatever the hour
    ("last24Hours", MON, "2024-03-03 01:00", "2024-03-04 01:00", 24),
    ("currentHour", SUN, "2024-03-10 23:00", "2024-03-11 00:00", 1),
    ("last1Hour", JAN1, "2024-12-31 23:00", "2025-01-01 00:00", 1),
    ("last24Hours", JAN1, "2024-12-31 01:00", "2025-01-01 01:00", 24),
    ("last3Hours", LEAP_MAR1, "2024-03-01 09:00", "2024-03-01 12:00", 3),
    ("last24Hours", LEAP_MAR1, "2024-02-29 01:00", "2024-03-01 01:00", 24),
    # ---- DAY
    ("today", MON, "2024-03-04", "2024-03-05", 1),
    ("today", SUN, "2024-03-10", "2024-03-11", 1),
    ("today", JAN1, "2025-01-01", "2025-01-02", 1),
    ("last1Days", MON, "2024-03-03", "2024-03-04", 1),
    ("last1Days", JAN1, "2024-12-31", "2025-01-01", 1),
    ("last1Days", LEAP_MAR1, "2024-02-29", "2024-03-01", 1),
    ("last2Days", LEAP_MAR1, "2024-02-28", "2024-03-01", 2),
    ("last3Days", MON, "2024-03-01", "2024-03-04", 3),
    ("last7Days", MON, "2024-02-26", "2024-03-04", 7),
    ("last7Days", JAN1, "2024-12-25", "2025-01-01", 7),
    ("last7Days", LEAP_MAR1, "2024-02-23", "2024-03-01", 7),
    # ---- WEEK (weeks start on Monday)
    ("thisWeek", MON, "2024-03-04", "2024-03-05", 1),
    ("thisWeek", SUN, "2024-03-04", "2024-03-11", 7),
    ("thisWeek", JAN1, "2024-12-30", "2025-01-02", 3),
    ("thisWeek", LEAP_MAR1, "2024-02-26", "2024-03-02", 5),
    ("thisWeek", MON_JAN1, "2024-01-01", "2024-01-02", 1),
    ("lastWeek", MON, "2024-02-26", "2024-03-04", 7),
    ("lastWeek", SUN, "2024-02-26", "2024-03-04", 7),
    ("lastWeek", JAN1, "2024-12-23", "2024-12-30", 7),
    ("lastWeek", MON_JAN1, "2023-12-25", "2024-01-01", 7),
    ("lastMonday", MON, "2024-02-26", "2024-02-27", 1),
    ("lastMonday", SUN, "2024-02-26", "2024-02-27", 1),
    ("lastTuesday", JAN1, "2024-12-24", "2024-12-25", 1),
    ("lastWednesday", JAN1, "2024-12-25", "2024-12-26", 1),
    ("lastThursday", LEAP_MAR1, "2024-02-22", "2024-02-23", 1),
    ("lastFriday", MON, "2024-03-01", "2024-03-02", 1),
    ("lastSaturday", MON, "2024-03-02", "2024-03-03", 1),
    ("lastSunday", MON, "2024-03-03", "2024-03-04", 1),
    ("lastSunday", SUN, "2024-03-03", "2024-03-04", 1),
    ("lastSunday", MON_JAN1, "2023-12-31", "2024-01-01", 1),
    # ---- MONTH
    ("thisMonth", MON, "2024-03-01", "2024-03-05", 4),
    ("thisMonth", LEAP_MAR1, "2024-03-01", "2024-03-02", 1),
    ("thisMonth", JAN1, "2025-01-01", "2025-01-02", 1),
    ("thisMonth", MONTH_END, "2024-04-01", "2024-05-01", 30),
    ("thisMonth", YEAR_END, "2023-12-01", "2024-01-01", 31),
    ("lastMonth", MON, "2024-02-01", "2024-03-01", 29),
    ("lastMonth", LEAP_MAR1, "2024-02-01", "2024-03-01", 29),
    ("lastMonth", "2023-03-01 00:00", "2023-02-01", "2023-03-01", 28),
    ("lastMonth", JAN1, "2024-12-01", "2025-01-01", 31),
    ("lastMonth", MONTH_END, "2024-03-01", "2024-04-01", 31),
    ("lastMonthBegin", LEAP_MAR1, "2024-02-01", "2024-02-02", 1),
    ("lastMonthBegin", JAN1, "2024-12-01", "2024-12-02", 1),
    ("lastMonthEnd", LEAP_MAR1, "2024-02-29", "2024-03-01", 1),
    ("lastMonthEnd", "2023-03-15 00:00", "2023-02-28", "2023-03-01", 1),
    ("lastMonthEnd", JAN1, "2024-12-31", "2025-01-01", 1),
    ("lastMonthEnd", MONTH_END, "2024-03-31", "2024-04-01", 1),
    ("thisMonthBegin", MON, "2024-03-01", "2024-03-02", 1),
    ("thisMonthBegin", JAN1, "2025-01-01", "2025-01-02", 1),
    # departure: DolphinScheduler's thisMonthEnd is the 1st (it adds 0 days to it); ours is the last day
    ("thisMonthEnd", LEAP_MAR1, "2024-03-31", "2024-04-01", 1),
    ("thisMonthEnd", "2024-02-10 00:00", "2024-02-29", "2024-03-01", 1),
    ("thisMonthEnd", MONTH_END, "2024-04-30", "2024-05-01", 1),
]


@pytest.mark.parametrize(("date_value", "base", "first", "last", "count"), CASES)
def test_windows(date_value: str, base: str, first: str, last: str, count: int) -> None:
    got = windows(date_value, ms(base))
    assert len(got) == count
    assert got[0][0] == ms(first)
    assert got[-1][1] == ms(last)
    width = got[0][1] - got[0][0]
    assert width * count == ms(last) - ms(first)
    for (s1, e1), (s2, e2) in pairwise(got):
        assert e1 == s2, "windows are consecutive"
        assert e2 - s2 == e1 - s1 == width, "windows have one length"


def test_every_declared_date_value_is_covered_by_the_table() -> None:
    declared = {v for values in DATE_VALUES.values() for v in values}
    assert declared == {case[0] for case in CASES}


@pytest.mark.parametrize("date_value", sorted({v for vs in DATE_VALUES.values() for v in vs}))
@pytest.mark.parametrize("base", [MON, SUN, JAN1, LEAP_MAR1, MONTH_END, YEAR_END, MON_JAN1])
def test_windows_are_aligned_and_never_in_the_future(date_value: str, base: str) -> None:
    b = ms(base)
    got = windows(date_value, b)
    assert got
    if date_value == "thisMonthEnd":  # the month's last day: after the base date, by definition
        ((start, end),) = got
        assert end - start == 86_400_000 and start <= b + 31 * 86_400_000
        assert windows("lastMonthEnd", end) == got  # the day before the next month's first
        return
    unit = 60_000 if date_value.endswith(("Minute", "Minutes")) else 3_600_000 if "Hour" in date_value else 86_400_000
    for start, end in got:
        assert start % unit == 0 and end - start == unit
        assert start <= b, "a window never starts after the base date"
    current = date_value.startswith(("current", "today", "thisWeek")) or date_value == "thisMonth"
    if date_value == "thisMonthBegin" or (date_value == "last24Hours" and b % 86_400_000 < 3_600_000):
        current = got[-1][0] <= b < got[-1][1]  # contains the base only on the 1st / in hour 0
    # current*/today/this* windows contain the base instant; the others end at or before it.
    assert (got[-1][0] <= b < got[-1][1]) == current


def test_last2hours_literal() -> None:
    assert windows("last2Hours", ms(MON)) == [
        (ms("2024-03-04 08:00"), ms("2024-03-04 09:00")),
        (ms("2024-03-04 09:00"), ms("2024-03-04 10:00")),
    ]


def test_unknown_date_value() -> None:
    with pytest.raises(ValueError, match="nextWeek"):
        windows("nextWeek", ms(MON))


S, W, F = SUCCESS, WAITING, FAILED

COMBINE = [
    # relation, results, verdict
    ("AND", [], S),
    ("AND", [S], S),
    ("AND", [W], W),
    ("AND", [F], F),
    ("AND", [S, S], S),
    ("AND", [S, W], W),
    ("AND", [S, F], F),
    ("AND", [W, S], W),
    ("AND", [W, W], W),
    ("AND", [W, F], F),
    ("AND", [F, S], F),
    ("AND", [F, W], F),
    ("AND", [F, F], F),
    ("AND", [S, W, F], F),
    ("OR", [], F),
    ("OR", [S], S),
    ("OR", [W], W),
    ("OR", [F], F),
    ("OR", [S, S], S),
    ("OR", [S, W], S),
    ("OR", [S, F], S),
    ("OR", [W, S], S),
    ("OR", [W, W], W),
    ("OR", [W, F], W),
    ("OR", [F, S], S),
    ("OR", [F, W], W),
    ("OR", [F, F], F),
    ("OR", [F, W, S], S),
]


@pytest.mark.parametrize(("relation", "results", "verdict"), COMBINE)
def test_combine(relation: str, results: list[str], verdict: str) -> None:
    assert combine(relation, results) == verdict
    assert combine(relation, iter(results)) == verdict  # any iterable, consumed once
