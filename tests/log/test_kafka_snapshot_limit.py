"""A snapshot over the record limit is not written, and the partition goes on deciding (a real broker).

Before, the oversized snapshot record failed the whole transaction: the partition was recovered,
folded to the next snapshot, and failed again, deciding nothing more.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import msgspec
import pytest

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.kafka.client import KafkaClient
from easysched_es.runtime.kafka.master import KafkaMaster

pytestmark = pytest.mark.kafka


def test_an_oversized_snapshot_is_skipped_and_decisions_go_on(kafka_bootstrap: str) -> None:
    settings = KafkaSettings(kafka_bootstrap, prefix=f"snaplimit{os.getpid()}x{time.time_ns()}", partitions=1)
    seen: list[tuple[str, dict[str, Any]]] = []
    master = KafkaMaster(settings, name="limit", session_timeout_ms=6000, snapshot_every=2,
                         on_event=lambda what, data: seen.append((what, data)))
    master.snapshot_limit = 200  # bytes: every snapshot of this partition is over it
    stop = threading.Event()
    thread = threading.Thread(target=master.run, args=(stop,), daemon=True)
    thread.start()
    flow = msgspec.convert({"name": "plain", "tasks": [{"name": "a", "type": "SHELL", "command": "true"}]},
                           WorkflowDefinition)
    try:
        with KafkaClient(settings, timeout=120) as client:
            client.define(flow)
            started = [client.start("plain", partition=0) for _ in range(6)]  # each verdict needs the master
            client.stop(started[0])
        skipped = [data for what, data in seen if what == "snapshot_skipped"]
        assert skipped and all(d["partition"] == 0 and d["bytes"] > 200 == d["limit"] for d in skipped), seen
        assert not [what for what, _ in seen if what == "transaction_failed"], seen
        with KafkaStream(settings, "snapshots", create=False) as snapshots:
            assert snapshots.end(0) == 0  # none written
    finally:
        stop.set()
        thread.join(60)
