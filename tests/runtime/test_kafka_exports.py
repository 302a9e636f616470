"""The Kafka client is part of the package's API, loaded on first use."""

from __future__ import annotations

import easysched_es as es
from easysched_es.runtime.kafka.client import KafkaClient


def test_kafka_client_is_exported() -> None:
    assert "KafkaClient" in es.__all__
    assert es.KafkaClient is KafkaClient
