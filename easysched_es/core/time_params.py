"""DolphinScheduler's built-in time parameters and `$[...]` time expressions, pure.

Follows DolphinScheduler's `BusinessTimeUtils.getBusinessTime`, `ParameterUtils
.convertParameterPlaceholders` and `TimePlaceholderUtils` (task-api parser package):

- `system.biz.date`    = the day before the base time, `yyyyMMdd`
- `system.biz.curdate` = the day of the base time, `yyyyMMdd`
- `system.datetime`    = the base time, `yyyyMMddHHmmss`

all on the wall clock of the instance's zone. The base time is the schedule time, else the
time the instance started (DolphinScheduler: "now" for a manual start). `$[...]` expressions
are evaluated on `system.datetime`: `$[yyyyMMdd]`, `$[yyyyMMdd-1]` (days, with arithmetic:
`-7*2`), `$[HHmmss+1/24]` (N/24 = hours, N/24/60 = minutes), `$[add_months(yyyyMMdd,-1)]`,
`$[month_begin(fmt,N)]` / `$[month_end(fmt,N)]` / `$[week_begin(fmt,N)]` / `$[week_end(fmt,N)]`
(that day + N days), `$[month_first_day(fmt,N)]` / `$[month_last_day(fmt,N)]` (N months),
`$[week_first_day(fmt,N)]` / `$[week_last_day(fmt,N)]` (N weeks), `$[this_day(fmt)]`,
`$[last_day(fmt)]`, `$[year_week(fmt[,D])]` and `$[timestamp(expr)]`. Formats are Java
`DateTimeFormatter` patterns (`yyyy MM dd HH mm ss`, `yy`, `MMM`, `EEE`, `a`, `D`, `'text'`).
A key of one digit (`$[1]`) is left as is, as in DolphinScheduler.

Integer arithmetic reproduces DolphinScheduler's evaluator exactly, including its quirk that
a unary minus applies to everything after it up to the closing parenthesis (`-1+2` is -3).
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from easysched_es.core.zones import zone as _zone

BIZ_DATE = "system.biz.date"
BIZ_CURDATE = "system.biz.curdate"
DATETIME = "system.datetime"

_TIME_EXPR = re.compile(r"\$\[([^$\]]+)]")
_PARAM_REF = re.compile(r"\$\{([^{}]+)}")
_SINGLE_DIGIT = re.compile(r"[0-9]")
_EPOCH = datetime(1970, 1, 1)


class TimeExprError(ValueError):
    """A `$[...]` expression DolphinScheduler would refuse too."""


def local_time(base: int, zone: str) -> datetime:
    """The wall-clock time (naive, whole seconds) of epoch-ms `base` in `zone`."""
    return datetime.fromtimestamp(base // 1000, UTC).astimezone(_zone(zone)).replace(tzinfo=None)


def builtin(base: int, zone: str) -> dict[str, str]:
    """`system.biz.date`, `system.biz.curdate` and `system.datetime` for a base time."""
    biz_date, curdate, stamp = _builtin_values(base // 1000, zone)
    return {BIZ_DATE: biz_date, BIZ_CURDATE: curdate, DATETIME: stamp}


@functools.lru_cache(maxsize=4096)
def _builtin_values(seconds: int, zone: str) -> tuple[str, str, str]:
    # Cached: every instance start needs them and consecutive starts share a second (the
    # fold's hot path); a pure function of (second, zone), so the cache changes no result.
    t = local_time(seconds * 1000, zone)
    return (t - timedelta(days=1)).strftime("%Y%m%d"), t.strftime("%Y%m%d"), t.strftime("%Y%m%d%H%M%S")


def env_name(param: str) -> str:
    """The environment variable a parameter becomes: dots are not valid in shell names."""
    return param.replace(".", "_")


def resolve(value: str, params: Mapping[str, str], at: datetime, zone: str = "UTC") -> str:
    """`${name}` from `params` (unknown names left as is), then every `$[...]` at wall time `at` in `zone`."""
    if "${" in value:
        value = _PARAM_REF.sub(lambda m: params.get(m.group(1), m.group(0)), value)
    if "$[" not in value:
        return value
    return _TIME_EXPR.sub(
        lambda m: m.group(0) if _SINGLE_DIGIT.fullmatch(m.group(1)) else evaluate(m.group(1), at, zone), value
    )


def check(value: str) -> str | None:
    """None if every `$[...]` in `value` can be evaluated, else the reason (for define)."""
    for m in _TIME_EXPR.finditer(value):
        if not _SINGLE_DIGIT.fullmatch(m.group(1)):
            try:
                evaluate(m.group(1), datetime(2024, 2, 29, 12, 30, 15))
            except TimeExprError as exc:
                return str(exc)
    return None


# ---- expressions -----------------------------------------------------------------------


def evaluate(expression: str, at: datetime, zone: str = "UTC") -> str:
    """One `$[...]` expression's value at wall time `at` (in `zone`, for timestamp()). Raises TimeExprError."""
    try:
        return _evaluate(expression, at, zone)
    except (TimeExprError, ValueError, OverflowError, IndexError, ZeroDivisionError) as exc:
        detail = str(exc) if isinstance(exc, TimeExprError) else type(exc).__name__
        raise TimeExprError(f"unsupported time expression $[{expression}]: {detail}") from None


def _args(expression: str, name: str) -> list[str]:
    return expression[len(name) + 1 : -1].split(",")


def _evaluate(expression: str, at: datetime, zone: str) -> str:
    if expression.startswith("timestamp"):
        inner = expression[len("timestamp") + 1 : -1]
        t, fmt = _time_expression(inner, at)
        # DolphinScheduler formats, then parses back with yyyyMMddHHmmss: that format only.
        text = java_format(t, fmt)
        if not re.fullmatch(r"\d{14}", text):
            raise TimeExprError("timestamp() needs an expression formatted yyyyMMddHHmmss")
        parsed = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=_zone(zone))
        return str((parsed.astimezone(UTC).replace(tzinfo=None) - _EPOCH) // timedelta(seconds=1))
    if expression.startswith("year_week"):
        args = _args(expression, "year_week")
        first = calculate(args[1]) if len(args) > 1 else 1
        return _year_week(at, args[0], first)
    t, fmt = _time_expression(expression, at)
    return java_format(t, fmt)


def _time_expression(expression: str, at: datetime) -> tuple[datetime, str]:
    """DolphinScheduler's `calcTimeExpression`: the date to format and the format."""
    monday = at - timedelta(days=at.weekday())
    sunday = monday + timedelta(days=6)
    first = at.replace(day=1)
    last = at.replace(day=calendar.monthrange(at.year, at.month)[1])
    with_days = {"month_begin": first, "month_end": last, "week_begin": monday, "week_end": sunday}
    for name in ("add_months", "month_begin", "month_end", "week_begin", "week_end"):
        if expression.startswith(name):
            args = _args(expression, name)
            if len(args) != 2:
                raise TimeExprError(f"{name} takes two arguments (format, number)")
            n = calculate(args[1])
            if name == "add_months":
                return add_months(at, n), args[0]
            return with_days[name] + timedelta(days=n), args[0]
    for name in ("month_first_day", "month_last_day", "this_day", "last_day", "week_first_day", "week_last_day"):
        if expression.startswith(name):
            args = _args(expression, name)
            n = calculate(args[1]) if len(args) > 1 else 0
            if name == "month_first_day":
                return add_months(first, n), args[0]
            if name == "month_last_day":
                moved = add_months(at, n)
                return moved.replace(day=calendar.monthrange(moved.year, moved.month)[1]), args[0]
            if name == "this_day":
                return at, args[0]
            if name == "last_day":
                return at - timedelta(days=1), args[0]
            return (monday if name == "week_first_day" else sunday) + timedelta(weeks=n), args[0]
    return _minutes_expression(expression, at)


def _minutes_expression(expression: str, at: datetime) -> tuple[datetime, str]:
    """`fmt+N` / `fmt-N` (days; N/24 hours, N/24/60 minutes), split at the last sign."""
    sign = "+" if "+" in expression else "-" if "-" in expression else ""
    if sign:
        i = expression.rindex(sign)
        if i + 1 >= len(expression):
            raise TimeExprError(f"nothing after the last {sign!r}")
        if expression[i + 1].isdigit():
            minutes = _day_minutes(expression[i + 1 :])
            return at + timedelta(minutes=minutes if sign == "+" else -minutes), expression[:i]
    return at, expression


def _day_minutes(expr: str) -> int:
    slash = expr.find("/")
    return calculate(f"60*24*({expr})" if slash < 0 else f"60*24*({expr[:slash]}){expr[slash:]}")


def add_months(t: datetime, n: int) -> datetime:
    """Java `Calendar.add(MONTH, n)`: the day is clamped to the target month's length."""
    months = t.year * 12 + t.month - 1 + n
    year, month = divmod(months, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day)


def _year_week(at: datetime, fmt: str, first_day: int) -> str:
    """Java `Calendar` WEEK_OF_YEAR with minimal days 4 and the week starting on `first_day`
    (1 = Monday .. 7 = Sunday, else Monday), joined to the calendar YEAR as DolphinScheduler does."""
    start_wd = first_day - 1 if 1 <= first_day <= 7 else 0  # Python weekday of the week's first day
    day = at.date()
    week_start = day - timedelta(days=(day.weekday() - start_wd) % 7)
    week_year = (week_start + timedelta(days=3)).year  # the year holding 4+ days of this week
    jan1 = week_start.replace(year=week_year, month=1, day=1)
    first_start = jan1 - timedelta(days=(jan1.weekday() - start_wd) % 7)
    if (first_start + timedelta(days=3)).year != week_year:
        first_start += timedelta(days=7)
    week = (week_start - first_start).days // 7 + 1
    sep = "-" if "-" in fmt else ""
    return f"{at.year}{sep}{week:02d}"


# ---- DolphinScheduler's integer calculator ---------------------------------------------


def calculate(expression: str) -> int:
    """DolphinScheduler's `TimePlaceholderUtils.calculate`, reproduced exactly (see module doc)."""
    chars = list(expression.strip())
    for i, ch in enumerate(chars):
        if ch in "+-" and (i == 0 or chars[i - 1] in "+-*/("):
            chars[i] = "P" if ch == "+" else "N"
    tokens: list[str] = []
    num = ""
    for ch in chars:
        if ch.isdigit():
            num += ch
        else:
            if num:
                tokens.append(num)
            tokens.append(ch)
            num = ""
    if num:
        tokens.append(num)
    out: list[str] = []
    stack: list[str] = []
    binds = {"*": "*/+-", "/": "*/+-", "+": "+-", "-": "+-"}
    for tok in tokens:
        if tok[0].isdigit():
            out.append(tok)
        elif tok == "(":
            stack.append(tok)
        elif tok == ")":
            while stack[-1] != "(":
                out.append(stack.pop())
            stack.pop()
        else:
            while stack and tok in binds.get(stack[-1], ""):
                out.append(stack.pop())
            stack.append(tok)
    out.extend(reversed(stack))
    values: list[int] = []
    for tok in out:
        if tok[0].isdigit():
            values.append(int(tok))
            continue
        back = values.pop()
        front = 0 if tok in "PN" else values.pop()
        if tok in "P+":
            values.append(front + back)
        elif tok in "N-":
            values.append(front - back)
        elif tok == "*":
            values.append(front * back)
        elif tok == "/":
            q = abs(front) // abs(back)  # Java int division truncates toward zero
            values.append(q if (front >= 0) == (back > 0) else -q)
        else:
            raise TimeExprError(f"unexpected {tok!r} in {expression!r}")
    if len(values) != 1:
        raise TimeExprError(f"cannot calculate {expression!r}")
    return values[0]


# ---- Java DateTimeFormatter patterns ---------------------------------------------------

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _field(letter: str, n: int, t: datetime) -> str:
    if letter in "yu":
        return f"{t.year % 100:02d}" if n == 2 else f"{t.year:0{n}d}"
    if letter in "ML":
        if n >= 4:
            return _MONTHS[t.month - 1]
        return _MONTHS[t.month - 1][:3] if n == 3 else f"{t.month:0{n}d}"
    if letter == "E":
        return _WEEKDAYS[t.weekday()] if n >= 4 else _WEEKDAYS[t.weekday()][:3]
    if letter == "a":
        return "AM" if t.hour < 12 else "PM"
    if letter == "S":
        return f"{t.microsecond:06d}"[:n].ljust(n, "0")
    numbers = {"d": t.day, "H": t.hour, "h": (t.hour % 12) or 12, "K": t.hour % 12, "k": t.hour or 24,
               "m": t.minute, "s": t.second, "D": t.timetuple().tm_yday}
    if letter in numbers:
        return f"{numbers[letter]:0{n}d}"
    raise TimeExprError(f"pattern letter {letter!r} is not supported")


def java_format(t: datetime, pattern: str) -> str:
    """Format `t` with a Java DateTimeFormatter pattern (the common letters; see the module doc)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise TimeExprError("unterminated quote in the format")
            out.append(pattern[i + 1 : end] if end > i + 1 else "'")
            i = end + 1
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == ch:
                j += 1
            out.append(_field(ch, j - i, t))
            i = j
        elif ch in "{}#[]":
            raise TimeExprError(f"{ch!r} is reserved in a date format")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---- what the fold uses ----------------------------------------------------------------


def instance_params(params: Mapping[str, str], base: int, zone: str) -> tuple[dict[str, str], dict[str, str]]:
    """An instance's parameters with `${...}` and `$[...]` resolved, and its built-in ones.

    As DolphinScheduler's `curingGlobalParams`: the built-in time parameters are known to
    `${system.biz.date}` references, and a user parameter of the same name wins. Raises
    TimeExprError for an expression that cannot be evaluated.
    """
    system = builtin(base, zone)
    if not any("$" in v for v in params.values()):
        return dict(params), system
    known = {**system, **params}
    at = local_time(base, zone)
    return {k: resolve(v, known, at, zone) for k, v in params.items()}, system


def resolve_values(values: dict[str, str], params: Mapping[str, str], base: int, zone: str) -> dict[str, str]:
    """A task's own values (its `env`) resolved like parameters; the same dict when none needs it."""
    if not values or not any("$" in v for v in values.values()):
        return values
    at = local_time(base, zone)
    try:
        return {k: resolve(v, params, at, zone) for k, v in values.items()}
    except TimeExprError:
        return values  # refused at define; unreachable unless the base time is at the end of time
