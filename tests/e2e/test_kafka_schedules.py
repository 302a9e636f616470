"""Schedules on Kafka (a real broker): the owner partition's master fires them from its delay queue.

A schedule lives in one partition (`schedule_partition`); its master's `CheckDue` ticks fire it
at consecutive whole seconds, every fire starts a SCHEDULER instance with its nominal time, and
taking the schedule OFFLINE removes its entry in the same step: no fire starts anything after it.
"""

from __future__ import annotations

import pytest

from easysched_es.core import events as e
from easysched_es.runtime.embedded.client import CommandRejectedError
from easysched_es.schedule_verbs import schedule_partition
from tests.e2e.kafka_cluster import cluster
from tests.e2e.test_kafka_e2e import Cluster, cli, shell_flow, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["cluster"]  # the fixture, imported for this module's tests


def _fires(cluster: Cluster, partition: int) -> list[tuple[int, e.ScheduleFired]]:
    return [(b.offset, ev) for b in cluster.batches() if b.partition == partition for ev in b.events
            if isinstance(ev, e.ScheduleFired)]


def _scheduled_ok(cluster: Cluster) -> list[e.WorkflowStarted]:
    batches = cluster.batches()
    ok = {ev.instance for b in batches for ev in b.events
          if isinstance(ev, e.WorkflowFinished) and ev.state == "SUCCESS"}
    return [ev for b in batches for ev in b.events
            if isinstance(ev, e.WorkflowStarted) and ev.command_type == "SCHEDULER" and ev.instance in ok]


def test_a_schedule_fires_on_kafka_and_offline_removes_its_entry(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(shell_flow("ticker", "true"))
    owner = schedule_partition("ticker", cluster.settings.partitions)
    cluster.client.set_schedule("ticker", "* * * * * ? *", overlap="ALLOW_ALL")
    started = wait_until("two scheduled instances that succeeded", lambda: (
        found if len(found := _scheduled_ok(cluster)) >= 2 else None), timeout=120)
    assert {int(ev.instance.split("-")[0]) for ev in started} == {owner}  # only the owner fires
    nominal = sorted(ev.schedule_time for ev in started if ev.schedule_time is not None)
    assert len(nominal) == len(started) and all(t % 1000 == 0 for t in nominal)
    assert len(set(nominal)) == len(nominal)  # one instance per nominal second
    assert any(t["kind"] == "SCHEDULE" for t in cli(cluster, "timers"))

    offline = cluster.client.schedule_offline("ticker")
    assert not any(t["kind"] == "SCHEDULE" for t in cli(cluster, "timers"))
    # A later command in the owner partition, decided: every CheckDue before it has been folded too.
    probe = cluster.client.start("ticker", partition=owner)
    wait_until("the probe instance to end", lambda: any(
        isinstance(ev, e.WorkflowFinished) for _, ev in cluster.events_of(probe)), timeout=60)
    late = [ev for offset, ev in _fires(cluster, owner) if offset > offline.offset]
    assert late == [], late


def test_a_backfill_on_kafka_runs_in_the_schedule_partition_and_stop_routes_there(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(shell_flow("nightly", "true"))
    owner = schedule_partition("nightly", cluster.settings.partitions)
    # The backfill's dates come from the schedule's cron, which lives in the owner partition only.
    cluster.client.set_schedule("nightly", "0 0 2 * * ? *", timezone="Asia/Shanghai")
    backfill = cluster.client.backfill("nightly", "2026-11-01", "2026-11-04", parallel=2, reverse=True)
    assert backfill.startswith(f"{owner}-") and backfill.endswith("-backfill")
    final = cluster.client.backfill_wait(backfill, timeout=180)
    assert (final["state"], final["succeeded"], final["total"]) == ("SUCCESS", 4, 4)
    started = [ev for b in cluster.batches() for ev in b.events
               if isinstance(ev, e.WorkflowStarted) and ev.backfill == backfill]
    # 02:00 in Shanghai is 18:00 UTC the day before; latest first, all in the owner partition.
    assert [ev.schedule_time for ev in started] == sorted((ev.schedule_time for ev in started), reverse=True)
    assert {int(ev.instance.split("-")[0]) for ev in started} == {owner}
    assert all(ev.command_type == "COMPLEMENT_DATA" and (ev.schedule_time or 0) % 86_400_000 == 64_800_000
               for ev in started)
    assert cli(cluster, "status", backfill)["done"] == 4
    # A stop of the finished backfill is routed to its partition and refused there.
    with pytest.raises(CommandRejectedError, match="already SUCCESS"):
        cluster.client.stop(backfill)
