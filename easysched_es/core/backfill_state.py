"""The data of a backfill (COMPLEMENT_DATA) as the state holds it; the rules are in `core/backfill.py`.

A backfill holds its cursor and the dates in flight, never its whole expansion: a ten-year daily
backfill is one `Backfill` value of a few hundred bytes plus its running instances.
"""

from __future__ import annotations

import msgspec

# Where a backfill stands.
BF_RUNNING = "RUNNING_EXECUTION"
BF_SUCCESS = "SUCCESS"
BF_FAILURE = "FAILURE"
BF_STOP = "STOP"

# How its dates are expanded.
DAILY = "daily"  # one date per calendar day from `from`, at its time of day (no schedule)
CRON = "cron"  # the fire times of the workflow's schedule cron in [low, high]
LIST = "list"  # the dates listed (`--dates`), distinct and sorted


class DateRun(msgspec.Struct, array_like=True, omit_defaults=True):
    """One date in flight: its level (0 the workflow itself, 1.. its dependents) and its instances."""

    date: int
    level: int
    instances: list[str]
    failed: bool = False


class Backfill(msgspec.Struct, omit_defaults=True):
    """A backfill of `workflow` over a range of dates, run `parallel` dates at a time."""

    id: str
    workflow: str
    mode: str
    zone: str
    total: int
    # CRON: the first and last fire of the range; DAILY: the first day (proleptic ordinal) and the
    # time of day (ms); LIST: unused.
    low: int = 0
    high: int = 0
    cron: str = ""
    dates: list[int] = []  # LIST: the dates in run order
    parallel: int = 1
    reverse: bool = False
    params: dict[str, str] = {}
    # The workflows backfilled after each date, level by level (`--dependents`), and the cycle
    # their DEPENDENT items on the upstream have (the schedule's, core/cron_cycle.py; DAY daily).
    levels: list[list[str]] = []
    cycle: str = ""
    state: str = BF_RUNNING
    # Dates taken from the expansion so far, and (CRON) the last one taken.
    taken: int = 0
    cursor: int | None = None
    succeeded: int = 0
    failed: int = 0
    inflight: list[DateRun] = []
    # Why no further date is taken although some remain (a failure under failure strategy END...).
    halted: str = ""
    created: int = 0
    ended: int | None = None
