"""The self-started Apache Kafka broker (easysched_es.runtime.kafka.local_broker) and the kafka-python calls the
Kafka log relies on: plain round trip, a transaction with consumed offsets read back read_committed, and
a broker restart that keeps data and committed offsets."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from easysched_es.runtime.kafka import local_broker as kafka_local
from easysched_es.runtime.kafka.local_broker import KafkaLocalError, LocalKafka

DEADLINE_S = 30.0


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create_topics(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        admin.close()


def _poll_until(consumer: KafkaConsumer, done: Callable[[list[bytes]], bool]) -> list[bytes]:
    """Poll until ``done(values so far)`` holds; fail after DEADLINE_S."""
    values: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_S
    while not done(values):
        assert time.monotonic() < deadline, f"timed out; got {values!r}"
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(r.value for r in records)
    return values


@pytest.fixture
def consumers() -> Iterator[list[KafkaConsumer]]:
    opened: list[KafkaConsumer] = []
    yield opened
    for c in opened:
        c.close()


def _consumer(opened: list[KafkaConsumer], bootstrap: str, *topics: str, **config: object) -> KafkaConsumer:
    c = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config)
    opened.append(c)
    return c


@pytest.mark.kafka
def test_produce_consume_round_trip(kafka_bootstrap: str, consumers: list[KafkaConsumer]) -> None:
    topic = _name("roundtrip")
    _create_topics(kafka_bootstrap, topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [f"v{i}".encode() for i in range(50)]
    for i, value in enumerate(sent):
        producer.send(topic, value, key=f"k{i % 5}".encode())
    producer.flush()
    producer.close()

    got = _poll_until(_consumer(consumers, kafka_bootstrap, topic, group_id=_name("g")), lambda v: len(v) >= 50)
    assert sorted(got) == sorted(sent)


@pytest.mark.kafka
def test_transaction_with_offsets_is_read_committed(kafka_bootstrap: str, consumers: list[KafkaConsumer]) -> None:
    src, dst, group = _name("tx-in"), _name("tx-out"), _name("tx-group")
    _create_topics(kafka_bootstrap, src, dst)
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(3):
        plain.send(src, f"in{i}".encode())
    plain.flush()
    plain.close()

    source = _consumer(
        consumers, kafka_bootstrap, src, group_id=group, enable_auto_commit=False, isolation_level="read_committed"
    )
    records = []
    deadline = time.monotonic() + DEADLINE_S
    while len(records) < 3:
        assert time.monotonic() < deadline
        for batch in source.poll(timeout_ms=200).values():
            records.extend(batch)

    tx = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=_name("tx"))
    try:
        tx.init_transactions()
        tx.begin_transaction()
        for r in records:
            tx.send(dst, r.value.upper())
        tx.send_offsets_to_transaction(
            {TopicPartition(src, 0): OffsetAndMetadata(records[-1].offset + 1, "", -1)}, source.group_metadata()
        )
        tx.commit_transaction()
        tx.begin_transaction()
        tx.send(dst, b"ABORTED")
        tx.flush()
        tx.abort_transaction()
        tx.begin_transaction()
        tx.send(dst, b"LAST")
        tx.commit_transaction()
    finally:
        tx.close()

    committed = _consumer(consumers, kafka_bootstrap, dst, isolation_level="read_committed")
    assert _poll_until(committed, lambda v: b"LAST" in v) == [b"IN0", b"IN1", b"IN2", b"LAST"]
    uncommitted = _consumer(consumers, kafka_bootstrap, dst, isolation_level="read_uncommitted")
    assert b"ABORTED" in _poll_until(uncommitted, lambda v: b"LAST" in v)
    assert source.committed(TopicPartition(src, 0)) == 3  # the offsets went in with the transaction


@pytest.mark.kafka
def test_restart_keeps_data_and_offsets(local_kafka: LocalKafka, consumers: list[KafkaConsumer]) -> None:
    bootstrap, topic, group = local_kafka.bootstrap, _name("durable"), _name("g")
    _create_topics(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, f"r{i}".encode())
    producer.flush()
    producer.close()
    first = _consumer(consumers, bootstrap, topic, group_id=group, enable_auto_commit=False)
    assert len(_poll_until(first, lambda v: len(v) >= 10)) == 10
    first.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "", -1)})
    first.close()

    pid = local_kafka.pid
    local_kafka.restart()
    assert local_kafka.bootstrap == bootstrap and local_kafka.pid != pid
    assert local_kafka.format_seconds is None  # not formatted again

    again = _consumer(consumers, bootstrap, topic, group_id=group, enable_auto_commit=False)
    assert _poll_until(again, lambda v: len(v) >= 6) == [f"r{i}".encode() for i in range(4, 10)]


@pytest.mark.kafka
def test_detached_start_status_stop(kafka_session_broker: LocalKafka | None, tmp_path: Path) -> None:
    if kafka_session_broker is None:
        pytest.skip("EASYSCHED_KAFKA names an external broker; the local machinery is not in use")
    data = tmp_path / "detached"
    assert kafka_local.status(data) is None
    info = kafka_local.start_detached(data)
    try:
        assert info["already_running"] is False and info["accepting"] is True
        st = kafka_local.status(data)
        assert st is not None and st["bootstrap"] == info["bootstrap"] and st["mode"] == "detached"
        assert kafka_local.start_detached(data)["already_running"] is True
    finally:
        assert kafka_local.stop_detached(data) is True
    assert kafka_local.status(data) is None
    assert kafka_local.stop_detached(data) is False
    assert (data / "kafka-logs" / ".kafka_cleanshutdown").exists()


def test_pom_pins_the_module_version() -> None:
    pom = Path(__file__).resolve().parents[2] / "compose" / "kafka" / "pom.xml"
    versions = re.findall(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    assert versions == [kafka_local.KAFKA_VERSION]


def test_single_node_properties(tmp_path: Path) -> None:
    props = kafka_local.broker_properties(tmp_path, 19092, 19093)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"].startswith(str(tmp_path))


def test_maven_failure_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EASYSCHED_KAFKA_JARS", raising=False)
    fake_mvn = tmp_path / "mvn"
    fake_mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies' >&2\nexit 1\n")
    fake_mvn.chmod(0o755)
    with pytest.raises(KafkaLocalError) as err:
        kafka_local.ensure_jars(tmp_path / "cache", mvn=str(fake_mvn))
    message = str(err.value)
    assert "dependency:copy-dependencies" in message and str(fake_mvn) in message
    assert "Could not resolve dependencies" in message
    assert not (tmp_path / "cache" / f"kafka-{kafka_local.KAFKA_VERSION}" / "jars").exists()


def test_cluster_ids_never_look_like_options() -> None:
    ids = {kafka_local._new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
