"""Cron maths, pure: parse Quartz and 5-field cron expressions; `next_fire(cron, after, zone)`.

Two syntaxes, told apart by their field count:

- **Quartz** (DolphinScheduler's): 6 or 7 fields, `second minute hour day-of-month month
  day-of-week [year]`. Day of week is 1-7 = SUN-SAT; exactly one of day-of-month and
  day-of-week must be `?`. Day of month takes `L` (last day), `L-3` (third to last), `LW`
  (last weekday), `15W` (the weekday nearest the 15th, within the month); day of week takes
  `6L` (last Friday), `L` (= 7, Saturday) and `6#3` (third Friday). A range whose end is below
  its start wraps (`FRI-MON`, hours `22-2`), as in Quartz.
- **5-field cron** (crontab's, Airflow's): `minute hour day-of-month month day-of-week`, day of
  week 0-7 (0 and 7 are Sunday), seconds always 0, and the macros `@yearly @annually @monthly
  @weekly @daily @midnight @hourly`. As in Vixie/Debian cron, when both day fields are
  restricted (neither starts with `*`) a day matches either one (OR), otherwise both (AND).
  `L`, `W` and `#` are accepted here too.

Both take `*`, `a`, `a-b`, `*/n`, `a/n`, `a-b/n`, lists `a,b-c`, names `JAN-DEC` and
`SUN-SAT` (any case). A bad expression raises `CronError` naming the field.

Time zones: fires are computed on the local wall clock of an IANA zone. A local time that
does not exist (the hour skipped when clocks spring forward) is skipped: no fire. A local
time that occurs twice (the hour repeated when clocks fall back) fires once, at its first
occurrence. Fire times are whole seconds, returned as epoch milliseconds in UTC.

The search jumps field by field (year, month, day, hour, minute, second) with a bisect in
each field's sorted values, so finding the next fire costs a handful of steps, never a
minute-by-minute scan.
"""

from __future__ import annotations

import bisect
import calendar
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from easysched_es.core.zones import zone as _zone

MAX_YEAR = 9999

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTHS = {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}
_DAYS = {n: i for i, n in enumerate(_DAY_NAMES)}  # 5-field numbering
_QUARTZ_DAYS = {n: i + 1 for n, i in _DAYS.items()}  # Quartz: SUN=1 .. SAT=7
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


class CronError(ValueError):
    """A cron expression that cannot be used; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str, expression: str = "") -> None:
        where = f" in {expression!r}" if expression else ""
        super().__init__(f"{field}: {message}{where}")
        self.field = field


class _Field:
    """One numeric field's name, bounds and names."""

    def __init__(self, name: str, lo: int, hi: int, names: dict[str, int] | None = None) -> None:
        self.name, self.lo, self.hi, self.names = name, lo, hi, names or {}

    def value(self, text: str) -> int:
        upper = text.upper()
        if upper in self.names:
            return self.names[upper]
        if not text.isdigit():
            raise CronError(self.name, f"{text!r} is not a number{self._named()}")
        v = int(text)
        if not self.lo <= v <= self.hi:
            raise CronError(self.name, f"{v} is out of range {self.lo}-{self.hi}")
        return v

    def _named(self) -> str:
        return f" or a name ({'/'.join(self.names)})" if self.names else ""

    def parse(self, text: str, wrap: bool) -> set[int]:
        """The values of a list of `*`, `a`, `a-b`, with optional `/step`."""
        values: set[int] = set()
        for part in text.split(","):
            values.update(self._part(part, wrap))
        return values

    def _part(self, part: str, wrap: bool) -> list[int]:
        if not part:
            raise CronError(self.name, "empty item in a list")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(self.name, f"step {step_text!r} must be a whole number of 1 or more")
            step = int(step_text)
            if step > self.hi - self.lo + 1:
                raise CronError(self.name, f"step {step} is larger than the field's range {self.lo}-{self.hi}")
        if base in ("*", "?"):
            start, end = self.lo, self.hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = self.value(a), self.value(b)
        else:
            start = self.value(base)
            end = self.hi if slash else start
        if start <= end:
            return list(range(start, end + 1, step))
        if not wrap:
            raise CronError(self.name, f"range {base!r} starts after it ends")
        cycle = list(range(start, self.hi + 1)) + list(range(self.lo, end + 1))
        return cycle[::step]


_SEC = _Field("second", 0, 59)
_MIN = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MON = _Field("month", 1, 12, _MONTHS)
_DOW_CRON = _Field("day-of-week", 0, 7, _DAYS)
_DOW_QUARTZ = _Field("day-of-week", 1, 7, _QUARTZ_DAYS)
_YEAR = _Field("year", 1970, MAX_YEAR)


class _DayOfMonth:
    __slots__ = ("days", "last_offsets", "last_weekday", "nearest", "star")

    def __init__(self) -> None:
        self.days: set[int] = set()
        self.last_offsets: set[int] = set()  # L = 0, L-3 = 3
        self.last_weekday = False  # LW
        self.nearest: set[int] = set()  # 15W
        self.star = False

    def match(self, year: int, month: int, ndays: int) -> set[int]:
        if self.star:
            return set(range(1, ndays + 1))
        out = {d for d in self.days if d <= ndays}
        out.update(ndays - k for k in self.last_offsets if ndays - k >= 1)
        if self.last_weekday:
            out.add(_nearest_weekday(year, month, ndays, ndays))
        out.update(_nearest_weekday(year, month, n, ndays) for n in self.nearest if n <= ndays)
        return out


class _DayOfWeek:
    __slots__ = ("last", "nth", "star", "weekdays")

    def __init__(self) -> None:
        self.weekdays: set[int] = set()  # Python numbering: Monday = 0
        self.last: set[int] = set()  # 5L: the last Thursday
        self.nth: set[tuple[int, int]] = set()  # 5#3: (weekday, 3)
        self.star = False

    def match(self, year: int, month: int, ndays: int) -> set[int]:
        if self.star:
            return set(range(1, ndays + 1))
        first = calendar.weekday(year, month, 1)
        out = {d for d in range(1, ndays + 1) if (first + d - 1) % 7 in self.weekdays}
        last = (first + ndays - 1) % 7
        out.update(ndays - (last - wd) % 7 for wd in self.last)
        for wd, n in self.nth:
            d = 1 + (wd - first) % 7 + 7 * (n - 1)
            if d <= ndays:
                out.add(d)
        return out


def _nearest_weekday(year: int, month: int, day: int, ndays: int) -> int:
    """Quartz `W`: the weekday (Mon-Fri) nearest `day`, never leaving the month."""
    wd = calendar.weekday(year, month, day)
    if wd == 5:  # Saturday: Friday before, unless that is last month
        return day - 1 if day > 1 else day + 2
    if wd == 6:  # Sunday: Monday after, unless that is next month
        return day + 1 if day < ndays else day - 2
    return day


class Cron:
    """A parsed expression: sorted values per field and the day rules. Build with `parse`."""

    __slots__ = ("_month_days", "day_or", "dom", "dow", "expression", "hours", "minutes", "months", "seconds",
                 "syntax", "years")

    def __init__(self, expression: str, syntax: str, seconds: set[int], minutes: set[int], hours: set[int],
                 dom: _DayOfMonth | None, months: set[int], dow: _DayOfWeek | None, years: set[int] | None,
                 day_or: bool) -> None:
        self.expression, self.syntax = expression, syntax
        self.seconds, self.minutes, self.hours = sorted(seconds), sorted(minutes), sorted(hours)
        self.months = sorted(months)
        self.years = None if years is None else sorted(years)
        self.dom, self.dow, self.day_or = dom, dow, day_or
        self._month_days: dict[tuple[int, int], list[int]] = {}

    def __repr__(self) -> str:
        return f"Cron({self.expression!r})"

    def days(self, year: int, month: int) -> list[int]:
        """The matching days of one month, sorted (memoised: a pure function of the expression)."""
        key = (year, month)
        found = self._month_days.get(key)
        if found is None:
            if len(self._month_days) > 512:
                self._month_days.clear()
            ndays = calendar.monthrange(year, month)[1]
            dom = self.dom.match(year, month, ndays) if self.dom is not None else None
            dow = self.dow.match(year, month, ndays) if self.dow is not None else None
            if dom is None or dow is None:
                chosen = dom if dom is not None else dow
                assert chosen is not None
            elif self.day_or:
                chosen = dom | dow
            else:
                chosen = dom & dow
            found = self._month_days[key] = sorted(chosen)
        return found


@functools.lru_cache(maxsize=1024)
def parse(expression: str) -> Cron:
    """Parse a Quartz (6/7 fields) or 5-field cron expression or macro. Raises CronError."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise CronError("macro", f"unknown macro {text!r}; known: {' '.join(MACROS)}")
        return _parse_cron(text, macro.split())
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        return _parse_cron(text, fields)
    if len(fields) in (6, 7):
        return _parse_quartz(text, fields)
    raise CronError(
        "expression",
        f"expected 5 fields (minute hour day-of-month month day-of-week), 6 or 7 Quartz fields "
        f"(second minute hour day-of-month month day-of-week [year]) or a macro like @daily; got {len(fields)}",
        text,
    )


def _with_expr(expression: str, exc: CronError) -> CronError:
    return CronError(exc.field, str(exc).split(": ", 1)[1], expression)


def _parse_cron(text: str, f: list[str]) -> Cron:
    try:
        minutes, hours = _MIN.parse(f[0], False), _HOUR.parse(f[1], False)
        months = _MON.parse(f[3], False)
        dom = _parse_dom(f[2], False)
        dow = _parse_dow(f[4], _DOW_CRON, False)
    except CronError as exc:
        raise _with_expr(text, exc) from None
    # Vixie cron: OR when both are restricted; a field starting with '*' (or '?') is not.
    day_or = not (f[2][0] in "*?" or f[4][0] in "*?")
    cron = Cron(text, "cron", {0}, minutes, hours, dom, months, dow, None, day_or)
    _check_possible(cron, text)
    return cron


def _parse_quartz(text: str, f: list[str]) -> Cron:
    try:
        seconds, minutes, hours = _SEC.parse(f[0], True), _MIN.parse(f[1], True), _HOUR.parse(f[2], True)
        months = _MON.parse(f[4], True)
        if (f[3] == "?") == (f[5] == "?"):
            raise CronError(
                "day-of-week" if f[3] == "?" else "day-of-month",
                "exactly one of day-of-month and day-of-week must be '?' (Quartz), "
                "e.g. '0 0 2 * * ?' or '0 0 2 ? * MON'",
            )
        dom = None if f[3] == "?" else _parse_dom(f[3], True)
        dow = None if f[5] == "?" else _parse_dow(f[5], _DOW_QUARTZ, True)
        years = None if len(f) == 6 or f[6] == "*" else _YEAR.parse(f[6], False)
    except CronError as exc:
        raise _with_expr(text, exc) from None
    cron = Cron(text, "quartz", seconds, minutes, hours, dom, months, dow, years, False)
    _check_possible(cron, text)
    return cron


def _parse_dom(text: str, wrap: bool) -> _DayOfMonth:
    spec = _DayOfMonth()
    if text in ("*", "?"):
        spec.star = True
        return spec
    for part in text.upper().split(","):
        if part == "L":
            spec.last_offsets.add(0)
        elif part == "LW":
            spec.last_weekday = True
        elif part.startswith("L-"):
            n = part[2:]
            if not n.isdigit() or not 0 <= int(n) <= 30:
                raise CronError("day-of-month", f"{part!r}: the offset after 'L-' must be 0-30")
            spec.last_offsets.add(int(n))
        elif part.endswith("W"):
            spec.nearest.add(_DOM.value(part[:-1]))
        else:
            spec.days.update(_DOM.parse(part, wrap))
    return spec


def _parse_dow(text: str, field: _Field, wrap: bool) -> _DayOfWeek:
    spec = _DayOfWeek()
    quartz = field is _DOW_QUARTZ
    if text in ("*", "?"):
        spec.star = True
        return spec

    def weekday(v: int) -> int:  # to Python numbering, Monday = 0
        return (v - 2) % 7 if quartz else (v - 1) % 7

    for part in text.upper().split(","):
        if part == "L" and quartz:
            spec.weekdays.add(weekday(7))
        elif part.endswith("L") and len(part) > 1:
            spec.last.add(weekday(field.value(part[:-1])))
        elif "#" in part:
            day, _, nth = part.partition("#")
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise CronError("day-of-week", f"{part!r}: the number after '#' must be 1-5")
            spec.nth.add((weekday(field.value(day)), int(nth)))
        else:
            spec.weekdays.update(weekday(v) for v in field.parse(part, wrap))
    return spec


def _check_possible(cron: Cron, text: str) -> None:
    """Refuse a day-of-month that no allowed month has (Feb 30), instead of searching forever."""
    dom, dow = cron.dom, cron.dow
    if dom is None or dom.star or dom.last_offsets or dom.last_weekday:
        return
    if dow is not None and cron.day_or:
        return  # OR: the day of week alone can match
    longest = max(29 if m == 2 else calendar.monthrange(2001, m)[1] for m in cron.months)
    wanted = dom.days | dom.nearest
    if wanted and min(wanted) > longest:
        raise CronError("day-of-month", f"day {min(wanted)} never occurs in the allowed months", text)


# ---- the search ------------------------------------------------------------------------


def _ceil(values: list[int], v: int) -> int | None:
    i = bisect.bisect_left(values, v)
    return values[i] if i < len(values) else None


def _next_local(cron: Cron, t: datetime) -> datetime | None:
    """The first naive local time at or after `t` (whole seconds) that the expression matches."""
    y, mo, d, h, mi, s = t.year, t.month, t.day, t.hour, t.minute, t.second
    years = cron.years
    while True:
        if years is not None:
            ny = _ceil(years, y)
            if ny is None:
                return None
            if ny != y:
                y, mo, d, h, mi, s = ny, 1, 1, 0, 0, 0
        if y > MAX_YEAR:
            return None
        nmo = _ceil(cron.months, mo)
        if nmo is None:
            y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
            continue
        if nmo != mo:
            mo, d, h, mi, s = nmo, 1, 0, 0, 0
        nd = _ceil(cron.days(y, mo), d)
        if nd is None:
            mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
            continue
        if nd != d:
            d, h, mi, s = nd, 0, 0, 0
        nh = _ceil(cron.hours, h)
        if nh is None:
            d, h, mi, s = d + 1, 0, 0, 0
            continue
        if nh != h:
            h, mi, s = nh, 0, 0
        nmi = _ceil(cron.minutes, mi)
        if nmi is None:
            h, mi, s = h + 1, 0, 0
            continue
        if nmi != mi:
            mi, s = nmi, 0
        ns = _ceil(cron.seconds, s)
        if ns is None:
            mi, s = mi + 1, 0
            continue
        return datetime(y, mo, d, h, mi, ns)


def _utc_ms(local: datetime, tz: tzinfo) -> int | None:
    """Epoch ms of a naive local time's first occurrence in `tz`; None if it does not exist."""
    if tz is UTC:
        return (local - _EPOCH) // timedelta(milliseconds=1)
    aware = local.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(UTC).replace(tzinfo=None)
    if (utc.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)) != local:
        return None  # in a gap: clocks jumped over this wall time
    return (utc - _EPOCH) // timedelta(milliseconds=1)


def next_fire(cron: Cron | str, after: int, zone: str | tzinfo = "UTC") -> int | None:
    """The first fire time strictly after `after` (epoch ms), in epoch ms, or None if none is left.

    Pure: the same arguments always give the same answer (zone rules from the pinned tzdata).
    """
    spec = parse(cron) if isinstance(cron, str) else cron
    tz = _zone(zone) if isinstance(zone, str) else zone
    try:
        return _next_after(spec, after, tz)
    except (OverflowError, ValueError):
        return None  # the search ran past year 9999 (in UTC or in the zone): nothing left


def _next_after(spec: Cron, after: int, tz: tzinfo) -> int | None:
    first = after // 1000 * 1000 + 1000
    if first > 253_402_300_799_000:
        return None
    t = (datetime.fromtimestamp(first // 1000, UTC).astimezone(tz)).replace(tzinfo=None)
    while True:
        local = _next_local(spec, t)
        if local is None:
            return None
        ms = _utc_ms(local, tz)
        # A repeated wall time was already passed in its first occurrence: fire once only.
        if ms is not None and ms > after:
            return ms
        t = local + _SECOND  # OverflowError past 9999-12-31 23:59:59


def fires(cron: Cron | str, after: int, until: int, zone: str | tzinfo = "UTC") -> Iterator[int]:
    """Every fire time in (after, until], in order (lazily: a backfill's cursor walks this)."""
    spec = parse(cron) if isinstance(cron, str) else cron
    tz = _zone(zone) if isinstance(zone, str) else zone
    t = after
    while (t2 := next_fire(spec, t, tz)) is not None and t2 <= until:
        yield t2
        t = t2


def validate(expression: str, zone: str = "UTC") -> str | None:
    """None if the expression and zone are usable, else the reason (for define/schedule set)."""
    try:
        parse(expression)
        _zone(zone)
    except ValueError as exc:
        return str(exc)
    return None


def last_fire(cron: Cron | str, at_or_before: int, known: int, zone: str | tzinfo = "UTC") -> int:
    """The latest fire time <= `at_or_before`, given `known`, a fire time <= it.

    Searches back by doubling steps, then forward: a long gap (a master down for months)
    costs a few dozen `next_fire` calls, not one per missed fire.
    """
    spec = parse(cron) if isinstance(cron, str) else cron
    tz = _zone(zone) if isinstance(zone, str) else zone
    step = 1000
    while True:
        lo = max(at_or_before - step, known - 1)
        found = next_fire(spec, lo, tz)
        if found is not None and found <= at_or_before:
            while (later := next_fire(spec, found, tz)) is not None and later <= at_or_before:
                found = later
            return found
        if lo <= known - 1:
            return known
        step *= 2
