"""The log contract suite against the Kafka adapter (a real broker: see tests/kafka_broker.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from easysched_es.log.base import LogError, Stream
from easysched_es.log.kafka import KafkaSettings, KafkaStream, ensure_topics, load_client_config
from tests.log.contract import StreamContract, StreamFactory

pytestmark = pytest.mark.kafka

_run = itertools.count()


class TestKafkaStream(StreamContract):
    @pytest.fixture
    def make_stream(self, kafka_bootstrap: str) -> Iterator[StreamFactory]:
        prefix = f"contract{os.getpid()}x{next(_run)}"
        opened: list[KafkaStream] = []

        def make(name: str = "stream") -> Stream:
            stream = KafkaStream(KafkaSettings(kafka_bootstrap, prefix=prefix, partitions=2), name)
            opened.append(stream)
            return stream

        yield make
        for stream in opened:
            stream.close()


def test_topics_created_with_partitions_and_compaction(kafka_bootstrap: str) -> None:
    settings = KafkaSettings(kafka_bootstrap, prefix=f"topics{os.getpid()}", partitions=3)
    counts = ensure_topics(settings)
    assert counts == {f"{settings.prefix}.{s}": 3 for s in ("commands", "events", "snapshots")}
    # A second call keeps what exists.
    assert ensure_topics(settings) == counts
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic("snapshots"))])
        assert "compact" in repr(result)
    finally:
        admin.close()


def test_unreachable_broker_is_a_log_error() -> None:
    with pytest.raises(LogError, match="check the broker runs"):
        ensure_topics(KafkaSettings("127.0.0.1:1", prefix="nowhere"), timeout=2.0)


def test_client_config_from_file_and_env(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    props = tmp_path / "client.properties"
    props.write_text("# comment\nsecurity.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n")
    monkeypatch.setenv("EASYSCHED_KAFKA_SASL_PLAIN_USERNAME", "alice")
    config = load_client_config(props)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "PLAIN"
    assert config["sasl_plain_username"] == "alice"
