"""Issue 11 point 10: which Kafka the tests use (the choice everywhere; the container where Docker is)."""

from __future__ import annotations

import pytest

from tests.kafka_container import KafkaContainer, broker_choice, docker_answers


def test_10_the_choice_of_broker() -> None:
    assert broker_choice("10.0.0.1:9092", docker_answers=True) == "external"
    assert broker_choice("10.0.0.1:9092", docker_answers=False) == "external"
    assert broker_choice(None, docker_answers=True) == "container"
    assert broker_choice("", docker_answers=False) == "jars"


def test_10_docker_answers_is_false_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert docker_answers(timeout=1.0) is False


@pytest.mark.kafka
def test_10_the_container_path_where_docker_exists() -> None:
    if not docker_answers():
        pytest.skip("no Docker engine answers here: the jars path is used (see test_10_the_choice_of_broker)")
    from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]

    container = KafkaContainer().start()
    try:
        producer = KafkaProducer(bootstrap_servers=container.bootstrap)
        producer.send("easysched-tc-check", b"hello").get(timeout=60)
        producer.close()
        consumer = KafkaConsumer("easysched-tc-check", bootstrap_servers=container.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        assert [m.value for m in consumer][:1] == [b"hello"]
        consumer.close()
    finally:
        container.stop()
