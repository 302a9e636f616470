"""The cycle of a cron expression, as DolphinScheduler's `CronUtils.getMaxCycle` decides it.

A backfill with `--dependents` backfills only the dependent workflows whose DEPENDENT item on
the upstream has the upstream schedule's cycle (DS's `checkDependentWorkflowDefinitionValid`).
DS classifies each field as cron-utils does (`*` Always, `?` QuestionMark, `a/b` Every, `a,b`
And, `a-b` Between, anything else On) and asks, in order, the minute, hour, day, week and month
rules (`CycleFactory`); the first that matches gives the cycle, none gives None.
"""

from __future__ import annotations

ALWAYS, QUESTION, EVERY, AND, BETWEEN, ON = "always", "question", "every", "and", "between", "on"

# 5-field macros as the 5-field expressions they stand for.
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _kind(field: str) -> str:
    if field == "*":
        return ALWAYS
    if field == "?":
        return QUESTION
    if "/" in field:
        return EVERY
    if "," in field:
        return AND
    if "-" in field and not field.upper().startswith("L"):  # L-3 is one day (On), not a range
        return BETWEEN
    return ON


def _fields(expression: str) -> tuple[str, str, str, str, str] | None:
    """(minute, hour, day of month, month, day of week) in Quartz form, or None if not a cron."""
    text = _MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) == 5:  # 5-field cron: one of the day fields becomes Quartz's '?'
        minute, hour, dom, month, dow = parts
        if dow == "*":
            dow = "?"
        elif dom == "*":
            dom = "?"
        return minute, hour, dom, month, dow
    if len(parts) in (6, 7):
        return parts[1], parts[2], parts[3], parts[4], parts[5]
    return None


def cycle_of(expression: str) -> str | None:
    """MINUTE, HOUR, DAY, WEEK or MONTH (DEPENDENT's cycle names), or None as DS's getMaxCycle."""
    fields = _fields(expression)
    if fields is None:
        return None
    minute, hour, dom, month, dow = (_kind(f) for f in fields)
    is_every = {EVERY, ALWAYS}
    is_set = {EVERY, ALWAYS, BETWEEN, AND, ON}
    if minute in is_every and hour == ALWAYS and dom == ALWAYS and month == ALWAYS:
        return "MINUTE"
    if minute in is_set and hour in is_every and dom == ALWAYS and dow == QUESTION and month == ALWAYS:
        return "HOUR"
    if minute in is_set and hour in is_set and dom in is_every and dow == QUESTION and month == ALWAYS:
        return "DAY"
    if minute in is_set and hour in is_set and dom == QUESTION and dow in is_every and month == ALWAYS:
        return "WEEK"
    if minute in is_set and hour in is_set and month in is_every and (
            (dom in is_set and dow == QUESTION) or (dom == QUESTION and dow in is_set)):
        return "MONTH"
    return None
