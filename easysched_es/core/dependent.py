"""DEPENDENT task maths: date windows and the AND/OR verdict. Pure functions.

A date value turns a base date into a list of windows (half-open [start, end) in epoch
milliseconds), following DolphinScheduler's `DependentDateUtils`: `last2Hours` is two hourly
windows, `last7Days` seven daily windows, `thisWeek` every day from Monday to the base day,
`last24Hours` the 24 hourly windows from 01:00 of the day before to 00:00 of the base day
(DolphinScheduler's definition, not "the 24 hours before the base hour"). An item's windows
decide in date order, as in `DependentExecute`: the first window that is not a success
gives the item's result (`first_unsuccessful`).

Windows are taken in the instance's zone (UTC by default): a day is [local midnight, next
local midnight) in UTC epoch ms, so a DST day is 23 or 25 hours long; minutes and hours are
floored on the local clock and counted in elapsed time (so `last24Hours` is always 24 hourly
windows, ending at 01:00 local of the base day). Under UTC the windows are what they always were.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise

from easysched_es.core import zones

SUCCESS = "SUCCESS"
WAITING = "WAITING"
FAILED = "FAILED"

_MINUTE = 60_000
_HOUR = 3_600_000
_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Window = tuple[int, int]


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _midnight(d: date, tz: tzinfo) -> int:
    """Local midnight of day `d` in epoch ms (a midnight a DST jump skips maps to the jump)."""
    if tz is UTC:
        return (d - _EPOCH.date()).days * _DAY
    return _ms(datetime.combine(d, time(), tzinfo=tz))


def _units(end: int, unit: int, count: int) -> list[Window]:
    """`count` consecutive windows of `unit` ending at `end`, oldest first."""
    return [(end - k * unit, end - (k - 1) * unit) for k in range(count, 0, -1)]


def _days(first: date, last: date, tz: tzinfo) -> list[Window]:
    """Daily windows from the day `first` to the day `last`, both included, in zone `tz`."""
    days = [first + timedelta(days=k) for k in range((last - first).days + 2)]
    bounds = [_midnight(d, tz) for d in days]
    return list(pairwise(bounds))


def windows(date_value: str, base: int, zone: str = "") -> list[Window]:
    """The windows a date value covers for a base date (epoch ms) in `zone` ("" = UTC).

    Raises ValueError if the date value is unknown (zones.ZoneError, a ValueError, if the zone is).
    """
    tz = zones.zone(zone or "UTC")
    # The local wall clock at the base: the base shifted by the zone's offset at that instant.
    offset = (_EPOCH + timedelta(milliseconds=base)).astimezone(tz).utcoffset() or timedelta()
    local = base + offset // timedelta(milliseconds=1)
    minute, hour = base - local % _MINUTE, base - local % _HOUR
    today = (_EPOCH + timedelta(milliseconds=local)).date()
    day = _midnight(today, tz)
    fixed: dict[str, list[Window]] = {
        "currentMinute": [(minute, minute + _MINUTE)],
        "last1Minute": _units(minute, _MINUTE, 1),
        "last5Minutes": _units(minute, _MINUTE, 5),
        "last10Minutes": _units(minute, _MINUTE, 10),
        "last30Minutes": _units(minute, _MINUTE, 30),
        "currentHour": [(hour, hour + _HOUR)],
        "last1Hour": _units(hour, _HOUR, 1),
        "last2Hours": _units(hour, _HOUR, 2),
        "last3Hours": _units(hour, _HOUR, 3),
        # DependentDateUtils.getSpecialLastDayInterval: hours base-(h+23) .. base-h, h = base hour.
        "last24Hours": _units(day + _HOUR, _HOUR, 24),
    }
    if date_value in fixed:
        return fixed[date_value]
    yesterday = today - timedelta(days=1)
    last_days = {"today": 0, "last1Days": 1, "last2Days": 2, "last3Days": 3, "last7Days": 7}
    if date_value in last_days:
        n = last_days[date_value]
        return _days(today, today, tz) if n == 0 else _days(today - timedelta(days=n), yesterday, tz)
    monday = today - timedelta(days=today.weekday())
    last_monday = monday - timedelta(days=7)
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    last_month_begin = last_month_end.replace(day=1)
    weekdays = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    if date_value == "thisWeek":
        return _days(monday, today, tz)
    if date_value == "lastWeek":
        return _days(last_monday, monday - timedelta(days=1), tz)
    if date_value.startswith("last") and date_value[4:] in weekdays:
        d = last_monday + timedelta(days=weekdays.index(date_value[4:]))
        return _days(d, d, tz)
    if date_value == "thisMonth":
        return _days(first_of_month, today, tz)
    if date_value == "lastMonth":
        return _days(last_month_begin, last_month_end, tz)
    if date_value == "thisMonthBegin":
        return _days(first_of_month, first_of_month, tz)
    if date_value == "thisMonthEnd":
        # Departure: DolphinScheduler's getNeededMonthBeginInterval(date, false, 0) adds 0 days
        # to the first of the month, so its thisMonthEnd is the 1st; we take the month's last day.
        next_month = (first_of_month + timedelta(days=32)).replace(day=1)
        last_day = next_month - timedelta(days=1)
        return _days(last_day, last_day, tz)
    if date_value == "lastMonthBegin":
        return _days(last_month_begin, last_month_begin, tz)
    if date_value == "lastMonthEnd":
        return _days(last_month_end, last_month_end, tz)
    raise ValueError(f"unknown date_value {date_value!r}")


def first_unsuccessful(verdicts: Iterable[str]) -> str:
    """One item's result from its windows' verdicts in date order: the first that is not SUCCESS."""
    for verdict in verdicts:
        if verdict != SUCCESS:
            return verdict
    return SUCCESS


def combine(relation: str, results: Iterable[str]) -> str:
    """AND: FAILED if any failed, else WAITING if any waits, else SUCCESS. OR: the mirror."""
    seen = set(results)
    if relation == "AND":
        if FAILED in seen:
            return FAILED
        return WAITING if WAITING in seen else SUCCESS
    if SUCCESS in seen:
        return SUCCESS
    return WAITING if WAITING in seen else FAILED
