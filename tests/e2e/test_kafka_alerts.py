"""Alerts on Kafka: the partition's owner sends the SendAlert effect to a real webhook on 127.0.0.1."""

from __future__ import annotations

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_command
from easysched_es.log.kafka import KafkaStream
from easysched_es.runtime.kafka.client import instance_partition
from tests.e2e.kafka_cluster import cluster
from tests.e2e.test_alerts import Receiver, failing_flow
from tests.e2e.test_kafka_e2e import Cluster, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["cluster"]  # the shared fixture, imported for this module's tests


def alert_reports(cluster: Cluster, instance: str) -> list[c.AlertSent | c.AlertFailed]:
    with KafkaStream(cluster.settings, "commands", create=False) as commands:
        found = (decode_command(r.payload) for r in commands.iter_records(instance_partition(instance)))
        return [cmd for cmd in found if isinstance(cmd, (c.AlertSent, c.AlertFailed))]


def test_the_owner_sends_the_alert_of_a_failed_instance(cluster: Cluster) -> None:
    receiver = Receiver()
    try:
        cluster.master("master-a")
        cluster.worker("worker-a")
        cluster.client.define(failing_flow(receiver.url))
        instance = cluster.client.start("nightly")
        wait_until("the alert delivered", lambda: any(
            isinstance(ev, e.AlertDelivered) for _, ev in cluster.events_of(instance)), timeout=120)
    finally:
        receiver.close()
    assert [p["key"] for p in receiver.posts] == [f"{instance}/FAILURE/0"]
    assert receiver.posts[0]["on"] == "FAILURE" and receiver.posts[0]["attempt"] == 1
    reports = alert_reports(cluster, instance)
    assert [(type(r), r.key, r.attempt) for r in reports] == [(c.AlertSent, f"{instance}/FAILURE/0", 1)]


def test_a_new_owner_sends_the_alert_in_flight_again(cluster: Cluster) -> None:
    receiver = Receiver(hold=True)
    try:
        master = cluster.master("master-a")
        cluster.worker("worker-a")
        cluster.client.define(failing_flow(receiver.url))
        instance = cluster.client.start("nightly")
        assert receiver.first.wait(120), "the webhook was never called"
        master.kill()  # kill -9 while the receiver holds the POST: its report never reaches the log
        master.wait(10)
        receiver.release.set()
        cluster.master("master-b")  # owes the attempt in flight, derived from the state
        wait_until("the alert delivered", lambda: any(
            isinstance(ev, e.AlertDelivered) for _, ev in cluster.events_of(instance)), timeout=120)
    finally:
        receiver.close()
    assert {p["key"] for p in receiver.posts} == {f"{instance}/FAILURE/0"}  # one notification, sent twice
    assert len(receiver.posts) == 2 and {p["attempt"] for p in receiver.posts} == {1}
    assert [(type(r), r.attempt) for r in alert_reports(cluster, instance)] == [(c.AlertSent, 1)]
