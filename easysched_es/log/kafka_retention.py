"""The Kafka topics' retention, checked at master start.

The commands and events topics are the truth: the master recovers a partition from its newest
snapshot plus the commands after it, and `verify`/`replay`/`trace` read both topics. A topic
that deletes records by age or size (Kafka's default is `retention.ms` = 7 days) can delete
commands the newest snapshot does not cover yet (a quiet partition snapshots only every
`--snapshot-every` commands), and then the state cannot be rebuilt. So the topics easysched
creates keep everything (`retention.ms=-1`, `retention.bytes=-1`), and the master warns about
existing topics that do not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka import errors as kerr
from kafka.admin import ConfigResource, ConfigResourceType

from easysched_es.log.kafka import KafkaSettings

__all__ = ["KEEP_FOREVER", "retention_warnings", "warn_about_retention"]

log = logging.getLogger(__name__)

KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
"""The configs the commands and events topics are created with."""

_KEYS = ("retention.ms", "retention.bytes", "cleanup.policy")


def retention_warnings(configs: Mapping[str, Mapping[str, str]], snapshot_every: int) -> list[str]:
    """One message per commands/events topic (name -> its configs) whose retention is finite."""
    out = []
    for topic, conf in sorted(configs.items()):
        finite = [f"{k}={conf[k]}" for k in ("retention.ms", "retention.bytes")
                  if conf.get(k) not in (None, "-1") and int(conf[k]) >= 0]
        if "delete" not in conf.get("cleanup.policy", "delete") or not finite:
            continue
        out.append(
            f"Kafka topic {topic} has a finite retention ({', '.join(finite)}): the broker may delete "
            f"commands or events that the newest snapshot (one every {snapshot_every} commands per "
            "partition) does not cover, and then the state cannot be rebuilt. Set "
            f"`kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
            "--add-config retention.ms=-1,retention.bytes=-1` (or at least a retention far longer than "
            "the time a partition takes to receive --snapshot-every commands)"
        )
    return out


def topic_configs(settings: KafkaSettings, topics: list[str], timeout: float = 30.0) -> dict[str, dict[str, str]]:
    """The effective retention configs (`retention.ms`, `retention.bytes`, `cleanup.policy`) of `topics`."""
    admin = KafkaAdminClient(**{"request_timeout_ms": int(timeout * 1000), **settings.common()})
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs=dict.fromkeys(_KEYS)) for t in topics]
        raw: dict[str, Any] = admin.describe_configs(resources, config_filter="all").get("topic", {})
    finally:
        admin.close()
    return {t: {k: str(v.get("value")) for k, v in conf.items() if k in _KEYS} for t, conf in raw.items()}


def warn_about_retention(settings: KafkaSettings, snapshot_every: int) -> list[str]:
    """Log a WARNING for each commands/events topic with a finite retention; return the messages.

    A broker that refuses to describe configs (an ACL, an old broker) gets one warning saying the
    check was skipped; it never stops the master.
    """
    topics = [settings.topic("commands"), settings.topic("events")]
    try:
        messages = retention_warnings(topic_configs(settings, topics), snapshot_every)
    except (kerr.KafkaError, OSError, ValueError) as exc:
        messages = [f"could not read the retention of Kafka topics {topics} ({exc}); check they keep "
                    "every record (retention.ms=-1, retention.bytes=-1)"]
    for message in messages:
        log.warning("%s", message)
    return messages
