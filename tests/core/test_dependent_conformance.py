"""DEPENDENT decisions as DolphinScheduler's DependentExecute makes them (item 9 of issue 8)."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from tests.core.helpers import SECOND, T0, Master, dep, item, of, shell, wf

DAY = 86_400 * SECOND


def _check(m: Master, inst: str) -> str:
    return of(m.log, e.DependentChecked, instance=inst)[-1].result


def _upstream(m: Master, name: str, base: int, state: str, ended: int, scheduled: bool = True, at: int = 0) -> None:
    inst = f"9-{ended}"
    m.send(c.UpstreamFinished(at=at or ended, workflow=name, instance=inst, state=state, base_time=base,
                              scheduled=scheduled, ended=ended))


def test_windows_decide_in_date_order_a_waiting_window_before_a_failed_one_waits() -> None:
    """last2Days: day -2 has no instance, day -1 failed. DS returns WAITING at the first empty window."""
    m = Master()
    m.define(wf("up", shell("p")))
    m.define(wf("down", dep("d", item("up", date_value="last2Days"), failure_policy="FAIL")))
    _upstream(m, "up", T0 - DAY, "FAILURE", T0 - DAY + 60 * SECOND)
    inst = m.start("down")
    assert _check(m, inst) == "WAITING"
    # once the older window fails too, the first window decides: FAILED
    _upstream(m, "up", T0 - 2 * DAY, "FAILURE", T0 - 2 * DAY + 60 * SECOND)
    m.tick(10)
    assert _check(m, inst) == "FAILED"


def test_the_instance_that_finished_last_decides_not_the_latest_base_time() -> None:
    """Two scheduled runs in one day: DS orders by end_time desc, so a rerun that finished later wins."""
    m = Master()
    m.define(wf("up", shell("p")))
    m.define(wf("down", dep("d", item("up", date_value="today"))))
    morning, evening = T0 - 9 * 3_600 * SECOND, T0 - 3_600 * SECOND
    _upstream(m, "up", evening, "FAILURE", T0 - 1_800 * SECOND)
    _upstream(m, "up", morning, "SUCCESS", T0 - 60 * SECOND)  # an earlier schedule time, rerun and finished last
    assert _check(m, m.start("down")) == "SUCCESS"


def test_a_later_manual_run_overrides_a_scheduled_one_in_the_window() -> None:
    """Scheduled and manual winners: DS takes the higher id, i.e. the one created later."""
    m = Master()
    m.define(wf("up", shell("p")))
    m.define(wf("down", dep("d", item("up", date_value="today"))))
    _upstream(m, "up", T0 - 3_600 * SECOND, "FAILURE", T0 - 3_000 * SECOND, scheduled=True)
    _upstream(m, "up", T0 - 1_000 * SECOND, "SUCCESS", T0 - 100 * SECOND, scheduled=False)
    assert _check(m, m.start("down")) == "SUCCESS"


def test_this_month_begin_and_end() -> None:
    m = Master()
    m.define(wf("up", shell("p")))
    m.define(wf("down", dep("b", item("up", cycle="MONTH", date_value="thisMonthBegin"))))
    first = T0 - 3 * DAY  # T0 is 2024-03-04: the 1st of March
    _upstream(m, "up", first + 3_600 * SECOND, "SUCCESS", first + 7_200 * SECOND)
    assert _check(m, m.start("down")) == "SUCCESS"
