"""The cycle of a cron expression, as DolphinScheduler's CronUtils.getMaxCycle (CycleFactory)."""

from __future__ import annotations

import pytest

from easysched_es.core.cron_cycle import cycle_of


@pytest.mark.parametrize(("cron", "cycle"), [
    ("0 * * * * ?", "MINUTE"),          # every minute
    ("0 0/5 * * * ?", "MINUTE"),
    ("0 0 * * * ?", "HOUR"),            # every hour at :00
    ("0 15 0/2 * * ?", "HOUR"),
    ("0 0 2 * * ? *", "DAY"),           # daily at 02:00
    ("0 30 1,13 * * ?", "DAY"),
    ("0 0 2 ? * *", "WEEK"),            # DS: day of month '?', day of week every
    ("0 0 2 ? * MON *", "MONTH"),       # DS's rules make a weekly-on-Monday cron a MONTH cycle
    ("0 0 2 1 * ?", "MONTH"),
    ("0 0 2 L * ?", "MONTH"),
    ("0 0 2 1 1 ?", None),              # yearly: no rule of DS's matches
    ("0 0 2 * 1-6 ?", None),
    ("0 2 * * *", "DAY"),               # 5-field cron: its day-of-week '*' is Quartz's '?'
    ("@daily", "DAY"),
    ("@hourly", "HOUR"),
    ("@monthly", "MONTH"),
    ("not a cron", None),
])
def test_cycle_of_matches_dolphinschedulers_max_cycle(cron: str, cycle: str | None) -> None:
    assert cycle_of(cron) == cycle
