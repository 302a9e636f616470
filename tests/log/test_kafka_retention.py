"""The master warns at start when the commands/events topics have a finite retention (a real broker)."""

from __future__ import annotations

import logging
import os
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from easysched_es.log.kafka import KafkaSettings, ensure_topics
from easysched_es.log.kafka_retention import topic_configs, warn_about_retention
from easysched_es.runtime.kafka.master import KafkaMaster

pytestmark = pytest.mark.kafka


def test_new_topics_keep_everything_and_give_no_warning(kafka_bootstrap: str) -> None:
    settings = KafkaSettings(kafka_bootstrap, prefix=f"keepall{os.getpid()}x{time.time_ns()}", partitions=1)
    ensure_topics(settings)
    configs = topic_configs(settings, [settings.topic("commands"), settings.topic("events")])
    assert all(c["retention.ms"] == "-1" and c["retention.bytes"] == "-1" for c in configs.values()), configs
    assert warn_about_retention(settings, 20_000) == []


def test_master_start_warns_about_a_short_retention(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = KafkaSettings(kafka_bootstrap, prefix=f"shortret{os.getpid()}x{time.time_ns()}", partitions=1)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(settings.topic(s), 1, -1, topic_configs={"retention.ms": "60000"})
                             for s in ("commands", "events")], timeout_ms=60_000)
    finally:
        admin.close()
    with caplog.at_level(logging.WARNING, logger="easysched_es.log.kafka_retention"):
        master = KafkaMaster(settings, snapshot_every=500)
        master.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and master.retention_warnings == warned
    for topic, message in zip((settings.topic("commands"), settings.topic("events")), warned, strict=True):
        assert f"Kafka topic {topic} has a finite retention (retention.ms=60000)" in message
        assert "retention.ms=-1,retention.bytes=-1" in message and "every 500 commands" in message
