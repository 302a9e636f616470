"""Schedules through a real `easysched run`: fires every second, and a kill -9 across fire times."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import records
from tests.harness import Run, kill_leftovers, wait_until

pytestmark = pytest.mark.slow

FLOW = msgspec.convert({"name": "tick", "tasks": [{"name": "t", "type": "SHELL", "command": "true"}]},
                       WorkflowDefinition)


def fires(data: DataDir) -> list[e.ScheduleFired]:
    with data.events() as stream:
        return [ev for r in records(stream) for ev in decode_batch(r.payload).events if isinstance(ev, e.ScheduleFired)]


def _scheduled(run: Run) -> list[tuple[int, str]]:
    """(schedule_time, state) of every instance the schedule started, by schedule time."""
    return sorted((i.schedule_time or 0, i.state) for i in run.state().instances.values() if i.command_type)


def test_a_schedule_every_second_runs_instances_at_consecutive_whole_seconds(tmp_path: Path) -> None:
    n = 5
    run = Run(tmp_path)
    try:
        run.client.define(FLOW)
        first = (int(time.time()) + 2) * 1000
        run.client.set_schedule("tick", "* * * * * ?", start=first, end=first + (n - 1) * 1000, overlap="ALLOW_ALL")
        wait_until(f"{n} scheduled instances SUCCESS",
                   lambda: [s for _, s in _scheduled(run)] == ["SUCCESS"] * n, timeout=60)
        times = [t for t, _ in _scheduled(run)]
        assert times == [first + k * 1000 for k in range(n)]  # nominal whole seconds, none missing or twice
        assert run.state().schedules["tick"].next_fire is None  # past its end: no entry left
    finally:
        run.stop()
        kill_leftovers(tmp_path)


def test_kill9_across_fire_times_then_restart_handles_missed_fires_by_the_catchup_window(tmp_path: Path) -> None:
    first_run = Run(tmp_path)
    try:
        first_run.client.define(FLOW)
        first_run.client.set_schedule("tick", "* * * * * ?", overlap="ALLOW_ALL")  # default window: latest missed
        wait_until("two fires", lambda: len(_scheduled(first_run)) >= 2, timeout=30)
        first_run.kill9()
        down_at = int(time.time() * 1000)
        time.sleep(3.5)  # the master is down across three fire times (wall time must pass: no condition to wait on)
        second = Run(tmp_path)
        try:
            up_at = int(time.time() * 1000)
            wait_until("a fire after the restart",
                       lambda: any(t > up_at for t, _ in _scheduled(second)), timeout=30)
            second.client.schedule_offline("tick")
        finally:
            second.stop()
        got = fires(DataDir(tmp_path))
        started = [f.nominal for f in got if f.outcome == "STARTED"]
        assert len(started) == len(set(started)), "a nominal time started twice"
        missed = [f for f in got if f.outcome == "SKIPPED"]
        assert missed and all("catch-up window" in f.reason for f in missed)
        skipped = {f.nominal for f in missed}
        # Every nominal second from the first fire on is accounted for exactly once until the offline.
        seconds = sorted(set(started) | skipped)
        assert seconds == list(range(seconds[0], seconds[-1] + 1000, 1000))
        assert not set(started) & skipped
        assert all(down_at - 1000 <= t <= up_at for t in skipped), "only fires of the downtime were skipped"
        instances = [i for i in second.state().instances.values() if i.command_type]
        assert sorted(i.schedule_time for i in instances) == sorted(started)
    finally:
        kill_leftovers(tmp_path)
