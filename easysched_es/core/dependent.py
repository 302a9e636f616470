"""DEPENDENT task maths: date windows and the AND/OR verdict. Pure functions, UTC.

A date value turns a base date into a list of windows (half-open [start, end) in epoch
milliseconds), following DolphinScheduler's `DependentDateUtils`: `last2Hours` is two hourly
windows, `last7Days` seven daily windows, `thisWeek` every day from Monday to the base day,
`last24Hours` the 24 hourly windows from 01:00 of the day before to 00:00 of the base day
(DolphinScheduler's definition, not "the 24 hours before the base hour"). An item's windows
decide in date order, as in `DependentExecute`: the first window that is not a success
gives the item's result (`first_unsuccessful`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

SUCCESS = "SUCCESS"
WAITING = "WAITING"
FAILED = "FAILED"

_MINUTE = 60_000
_HOUR = 3_600_000
_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Window = tuple[int, int]


def _floor(ms: int, unit: int) -> int:
    return ms - ms % unit


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _day_start(ms: int) -> datetime:
    return datetime.fromtimestamp(_floor(ms, _DAY) / 1000, tz=UTC)


def _units(end: int, unit: int, count: int) -> list[Window]:
    """`count` consecutive windows of `unit` ending at `end`, oldest first."""
    return [(end - k * unit, end - (k - 1) * unit) for k in range(count, 0, -1)]


def _days(first: datetime, last: datetime) -> list[Window]:
    """Daily windows from the day `first` to the day `last`, both included."""
    start, stop = _ms(first), _ms(last) + _DAY
    return [(t, t + _DAY) for t in range(start, stop, _DAY)]


def windows(date_value: str, base: int) -> list[Window]:
    """The windows a date value covers for a base date (epoch ms). Raises ValueError if unknown."""
    minute, hour, day = _floor(base, _MINUTE), _floor(base, _HOUR), _floor(base, _DAY)
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
        "today": [(day, day + _DAY)],
        "last1Days": _units(day, _DAY, 1),
        "last2Days": _units(day, _DAY, 2),
        "last3Days": _units(day, _DAY, 3),
        "last7Days": _units(day, _DAY, 7),
    }
    if date_value in fixed:
        return fixed[date_value]
    today = _day_start(base)
    monday = today - timedelta(days=today.weekday())
    last_monday = monday - timedelta(days=7)
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    last_month_begin = last_month_end.replace(day=1)
    weekdays = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    if date_value == "thisWeek":
        return _days(monday, today)
    if date_value == "lastWeek":
        return _days(last_monday, monday - timedelta(days=1))
    if date_value.startswith("last") and date_value[4:] in weekdays:
        d = last_monday + timedelta(days=weekdays.index(date_value[4:]))
        return _days(d, d)
    if date_value == "thisMonth":
        return _days(first_of_month, today)
    if date_value == "lastMonth":
        return _days(last_month_begin, last_month_end)
    if date_value == "thisMonthBegin":
        return _days(first_of_month, first_of_month)
    if date_value == "thisMonthEnd":
        # Departure: DolphinScheduler's getNeededMonthBeginInterval(date, false, 0) adds 0 days
        # to the first of the month, so its thisMonthEnd is the 1st; we take the month's last day.
        next_month = (first_of_month + timedelta(days=32)).replace(day=1)
        last_day = next_month - timedelta(days=1)
        return _days(last_day, last_day)
    if date_value == "lastMonthBegin":
        return _days(last_month_begin, last_month_begin)
    if date_value == "lastMonthEnd":
        return _days(last_month_end, last_month_end)
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
