"""Cron maths: Quartz's documented examples, month ends, leap years, L/W/#, zones and DST, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from easysched_es.core import cron
from easysched_es.core.zones import ZoneError, zone


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=UTC if tz == "UTC" else ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def iso(t: int, tz: str = "UTC") -> str:
    return datetime.fromtimestamp(t / 1000, UTC if tz == "UTC" else ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %a")


def series(expr: str, start: int, n: int, tz: str = "UTC") -> list[str]:
    out, t = [], start
    for _ in range(n):
        nxt = cron.next_fire(expr, t, tz)
        assert nxt is not None
        out.append(iso(nxt, tz))
        t = nxt
    return out


START = ms(2024, 2, 26)  # a Monday, in a leap year, three days before the month's end

# Quartz's CronTrigger tutorial examples (quartz-scheduler.org), first fires after START.
QUARTZ_EXAMPLES = [
    ("0 0 12 * * ?", ["2024-02-26 12:00:00 Mon", "2024-02-27 12:00:00 Tue"]),  # 12pm every day
    ("0 15 10 ? * *", ["2024-02-26 10:15:00 Mon", "2024-02-27 10:15:00 Tue"]),
    ("0 15 10 * * ?", ["2024-02-26 10:15:00 Mon", "2024-02-27 10:15:00 Tue"]),
    ("0 15 10 * * ? *", ["2024-02-26 10:15:00 Mon", "2024-02-27 10:15:00 Tue"]),
    ("0 * 14 * * ?", ["2024-02-26 14:00:00 Mon", "2024-02-26 14:01:00 Mon"]),  # every minute 14:00-14:59
    ("0 0/5 14 * * ?", ["2024-02-26 14:00:00 Mon", "2024-02-26 14:05:00 Mon"]),
    ("0 0/5 14,18 * * ?", ["2024-02-26 14:00:00 Mon", "2024-02-26 14:05:00 Mon"]),
    ("0 0-5 14 * * ?", ["2024-02-26 14:00:00 Mon", "2024-02-26 14:01:00 Mon"]),
    ("0 10,44 14 ? 3 WED", ["2024-03-06 14:10:00 Wed", "2024-03-06 14:44:00 Wed"]),  # Wednesdays in March
    ("0 15 10 ? * MON-FRI", ["2024-02-26 10:15:00 Mon", "2024-02-27 10:15:00 Tue"]),
    ("0 15 10 15 * ?", ["2024-03-15 10:15:00 Fri", "2024-04-15 10:15:00 Mon"]),
    ("0 15 10 L * ?", ["2024-02-29 10:15:00 Thu", "2024-03-31 10:15:00 Sun"]),  # last day of the month
    ("0 15 10 L-2 * ?", ["2024-02-27 10:15:00 Tue", "2024-03-29 10:15:00 Fri"]),  # second-to-last day
    ("0 15 10 ? * 6L", ["2024-03-29 10:15:00 Fri", "2024-04-26 10:15:00 Fri"]),  # last Friday
    ("0 15 10 ? * 6#3", ["2024-03-15 10:15:00 Fri", "2024-04-19 10:15:00 Fri"]),  # third Friday
    ("0 0 12 1/5 * ?", ["2024-02-26 12:00:00 Mon", "2024-03-01 12:00:00 Fri"]),  # every 5 days from the 1st
    ("0 11 11 11 11 ?", ["2024-11-11 11:11:00 Mon", "2025-11-11 11:11:00 Tue"]),
    ("0 0 2 * * ? *", ["2024-02-26 02:00:00 Mon", "2024-02-27 02:00:00 Tue"]),  # DolphinScheduler's default
]


@pytest.mark.parametrize(("expr", "expected"), QUARTZ_EXAMPLES)
def test_quartz_documented_examples(expr: str, expected: list[str]) -> None:
    assert series(expr, START, len(expected)) == expected


def test_quartz_year_field_bounds_the_fires() -> None:
    got = series("0 15 10 ? * 6L 2002-2005", ms(2005, 11, 1), 2)
    assert got == ["2005-11-25 10:15:00 Fri", "2005-12-30 10:15:00 Fri"]
    assert cron.next_fire("0 15 10 ? * 6L 2002-2005", ms(2005, 12, 31)) is None
    assert cron.next_fire("0 15 10 * * ? 2005", START) is None


CALENDAR_CASES = [
    # month ends and leap years
    ("0 0 0 31 * ?", START, ["2024-03-31 00:00:00 Sun", "2024-05-31 00:00:00 Fri", "2024-07-31 00:00:00 Wed"]),
    ("0 0 0 29 2 ?", START, ["2024-02-29 00:00:00 Thu", "2028-02-29 00:00:00 Tue"]),
    ("0 0 29 2 *", ms(2096, 3, 1), ["2104-02-29 00:00:00 Fri"]),  # 2100 is not a leap year
    ("0 0 L 2 *", ms(2100, 1, 1), ["2100-02-28 00:00:00 Sun"]),
    ("0 0 0 L * ?", ms(2023, 1, 30), ["2023-01-31 00:00:00 Tue", "2023-02-28 00:00:00 Tue", "2023-03-31 00:00:00 Fri"]),
    # W: nearest weekday, never leaving the month
    ("0 0 0 1W * ?", ms(2024, 5, 31), ["2024-06-03 00:00:00 Mon"]),  # June 1st is a Saturday -> Monday 3rd
    ("0 0 0 31W * ?", ms(2024, 3, 1), ["2024-03-29 00:00:00 Fri"]),  # March 31st is a Sunday -> Friday 29th
    ("0 0 0 15W * ?", ms(2024, 6, 1), ["2024-06-14 00:00:00 Fri"]),  # Saturday 15th -> Friday
    ("0 0 0 16W * ?", ms(2024, 6, 1), ["2024-06-17 00:00:00 Mon"]),  # Sunday 16th -> Monday
    ("0 0 0 LW * ?", ms(2024, 8, 1), ["2024-08-30 00:00:00 Fri", "2024-09-30 00:00:00 Mon"]),
    # # and L in day of week
    ("0 0 0 ? * 2#5", ms(2024, 1, 1), ["2024-01-29 00:00:00 Mon", "2024-04-29 00:00:00 Mon"]),  # fifth Monday
    ("0 0 0 ? * 1L", ms(2024, 2, 1), ["2024-02-25 00:00:00 Sun", "2024-03-31 00:00:00 Sun"]),
    ("0 0 0 ? * L", ms(2024, 2, 26), ["2024-03-02 00:00:00 Sat"]),  # L alone = 7 = Saturday
    ("0 0 * * 5L", ms(2024, 2, 1), ["2024-02-23 00:00:00 Fri"]),
    ("0 0 * * 1#1", ms(2024, 2, 1), ["2024-02-05 00:00:00 Mon", "2024-03-04 00:00:00 Mon"]),
    # wrap-around ranges (Quartz) and names in any case
    ("0 0 22-2/2 * * ?", START, ["2024-02-26 02:00:00 Mon", "2024-02-26 22:00:00 Mon", "2024-02-27 00:00:00 Tue"]),
    ("0 0 12 ? nov-jan sat", ms(2024, 12, 30), ["2025-01-04 12:00:00 Sat"]),
    # 5-field: day-of-month OR day-of-week when both are restricted, AND when one starts with '*'
    ("0 0 13 * FRI", ms(2024, 9, 1), ["2024-09-06 00:00:00 Fri", "2024-09-13 00:00:00 Fri"]),
    ("0 0 */10 * 5", ms(2024, 9, 1), ["2024-10-11 00:00:00 Fri"]),  # "*/10" starts with "*": AND
    ("0 0 * * 7", START, ["2024-03-03 00:00:00 Sun"]),
    ("0 0 * * 0", START, ["2024-03-03 00:00:00 Sun"]),
    # macros
    ("@yearly", START, ["2025-01-01 00:00:00 Wed"]),
    ("@monthly", START, ["2024-03-01 00:00:00 Fri"]),
    ("@weekly", START, ["2024-03-03 00:00:00 Sun"]),
    ("@daily", START, ["2024-02-27 00:00:00 Tue"]),
    ("@hourly", START, ["2024-02-26 01:00:00 Mon"]),
]


@pytest.mark.parametrize(("expr", "start", "expected"), CALENDAR_CASES)
def test_calendar_cases(expr: str, start: int, expected: list[str]) -> None:
    assert series(expr, start, len(expected)) == expected


def test_next_fire_is_strictly_after_and_whole_seconds() -> None:
    t = ms(2024, 2, 26, 12) + 500
    assert cron.next_fire("* * * * * ?", t) == ms(2024, 2, 26, 12, 0, 1)
    assert cron.next_fire("0 0 12 * * ?", ms(2024, 2, 26, 12)) == ms(2024, 2, 27, 12)


def test_no_fire_left_near_the_end_of_time() -> None:
    assert cron.next_fire("59 23 31 12 *", ms(9999, 12, 31, 23, 59)) is None
    assert cron.next_fire("* * * * *", ms(9999, 12, 31, 23, 59), "Asia/Shanghai") is None


def test_fires_walks_a_range_lazily() -> None:
    got = list(cron.fires("@daily", ms(2024, 2, 27), ms(2024, 3, 2)))
    assert [iso(t)[:10] for t in got] == ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]


# ---- zones and daylight saving ---------------------------------------------------------

NY = "America/New_York"


def test_zone_fires_on_local_wall_time() -> None:
    # DolphinScheduler's default schedule, 02:00 in Shanghai = 18:00 UTC the day before.
    assert cron.next_fire("0 0 2 * * ? *", ms(2026, 12, 1), "Asia/Shanghai") == ms(2026, 12, 1, 18)


def test_a_local_time_that_does_not_exist_is_skipped() -> None:
    # 2024-03-10: New York clocks go from 02:00 to 03:00; 02:30 does not exist that day.
    got = series("30 2 * * *", ms(2024, 3, 9, tz=NY), 2, NY)
    assert got == ["2024-03-09 02:30:00 Sat", "2024-03-11 02:30:00 Mon"]
    # an every-15-minutes schedule has no fire inside the gap
    got = series("*/15 * * * *", ms(2024, 3, 10, 1, 30, tz=NY), 3, NY)
    assert got == ["2024-03-10 01:45:00 Sun", "2024-03-10 03:00:00 Sun", "2024-03-10 03:15:00 Sun"]


def test_a_local_time_that_occurs_twice_fires_once() -> None:
    # 2024-11-03: New York clocks go from 02:00 back to 01:00; 01:30 happens twice.
    fired = list(cron.fires("30 1 * * *", ms(2024, 11, 2, tz=NY), ms(2024, 11, 5, tz=NY), NY))
    assert [iso(t, NY) for t in fired] == [
        "2024-11-02 01:30:00 Sat", "2024-11-03 01:30:00 Sun", "2024-11-04 01:30:00 Mon"
    ]
    assert fired[1] == ms(2024, 11, 3, 5, 30)  # the first occurrence (EDT, UTC-4)
    # from inside the repeated hour's second pass, nothing of that hour fires again
    second_pass = ms(2024, 11, 3, 6, 10)  # 01:10 EST
    assert cron.next_fire("*/15 * * * *", second_pass, NY) == ms(2024, 11, 3, 7)  # 02:00 EST
    # every wall time of the repeated hour fires exactly once: 4 fewer fires that day
    day = list(cron.fires("*/15 * * * *", ms(2024, 11, 3, tz=NY) - 1, ms(2024, 11, 4, tz=NY) - 1, NY))
    assert len(day) == 96 and len({iso(t, NY) for t in day}) == 96


def test_zones_come_from_the_pinned_tzdata_package() -> None:
    z = zone("Europe/Paris")
    assert getattr(z, "key", None) == "Europe/Paris"
    with pytest.raises(ZoneError, match="did you mean Europe/Paris"):
        zone("europe/paris")
    with pytest.raises(ZoneError, match="unknown time zone"):
        zone("../../etc/passwd")


# ---- bad expressions name their field --------------------------------------------------

BAD = [
    ("61 * * * *", "minute: 61 is out of range 0-59"),
    ("* 24 * * *", "hour: 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
    ("* * * 13 *", "month: 13 is out of range 1-12"),
    ("* * * FOO *", "month: 'FOO' is not a number or a name"),
    ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
    ("0 0 30 2 *", "day-of-month: day 30 never occurs"),
    ("*/0 * * * *", "minute: step '0' must be a whole number of 1 or more"),
    ("5-2 * * * *", "minute: range '5-2' starts after it ends"),
    ("1,,2 * * * *", "minute: empty item"),
    ("60 * * * * ?", "second: 60 is out of range 0-59"),
    ("0 0 2 * * *", "day-of-month: exactly one of day-of-month and day-of-week must be '?'"),
    ("0 0 2 ? * ?", "day-of-week: exactly one"),
    ("0 0 0 ? * 0", "day-of-week: 0 is out of range 1-7"),
    ("0 0 0 ? * MON#6", "day-of-week: 'MON#6': the number after '#' must be 1-5"),
    ("0 0 0 L-31 * ?", "day-of-month: 'L-31': the offset after 'L-' must be 0-30"),
    ("0 0 0 * * ? 1969", "year: 1969 is out of range"),
    ("1 2 3", "expression: expected 5 fields"),
    ("", "expression: expected 5 fields"),
    ("@fortnightly", "macro: unknown macro"),
]


@pytest.mark.parametrize(("expr", "message"), BAD)
def test_bad_expressions_are_refused_naming_the_field(expr: str, message: str) -> None:
    reason = cron.validate(expr)
    assert reason is not None and reason.startswith(message), reason


def test_validate_names_a_bad_zone() -> None:
    assert "unknown time zone 'Mars/Olympus'" in (cron.validate("@daily", "Mars/Olympus") or "")
