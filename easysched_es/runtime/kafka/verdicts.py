"""Reading a command's verdict on Kafka: seek the events partition to its end BEFORE producing, then read forward.

The master writes one `EventBatch` per decided command to the events partition of the
command's partition, after the command. So the verdict of a command produced now is at or
after the events partition's end seen just before producing: the reader seeks there first
(a `ListOffsets` request, nothing is read) and then reads forward only what the master
writes from then on, with fetches the broker answers as soon as a record arrives. No record
written before the command is read, however long the partition is.

One consumer does it all: the partition counts (metadata), the seeks and the reads, so a
CLI command pays for one consumer connection, not one per stream and lookup.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kerr

from easysched_es.core.codec import decode_batch
from easysched_es.core.events import Event
from easysched_es.log.base import LogError
from easysched_es.log.kafka import KafkaSettings, describe_failure

__all__ = ["VerdictReader"]

# How long the broker may hold a fetch that finds nothing new: the reader's reaction time
# to the deadline, not its latency (a fetch returns as soon as a record lands).
FETCH_WAIT_MS = 100


class _Head(msgspec.Struct):
    offset: int = -1


_head = msgspec.msgpack.Decoder(_Head)


class VerdictReader:
    """One group-less `read_committed` consumer over the events topic (not thread-safe)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.topic = settings.topic("events")
        try:
            self.consumer = KafkaConsumer(
                **settings.consumer(), group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                allow_auto_create_topics=False,
                auto_offset_reset="latest", fetch_max_wait_ms=FETCH_WAIT_MS,
            )
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, settings)) from exc

    def partition_count(self, stream: str) -> int | None:
        """How many partitions the topic of `stream` has (from metadata), None if it does not exist."""
        try:
            parts = self.consumer.partitions_for_topic(self.settings.topic(stream))
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc
        return len(parts) if parts else None

    def seek_to_end(self, partitions: Sequence[int]) -> dict[int, int]:
        """Assign the events partitions and put each at its current (last stable) end; return those ends."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            self.consumer.assign(tps)
            self.consumer.resume(*tps)
            self.consumer.seek_to_end(*tps)
            return {tp.partition: int(self.consumer.position(tp)) for tp in tps}
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc

    def wait_for(self, wanted: dict[int, int], timeout: float) -> dict[int, list[Event]]:
        """Read forward until the batch of each command (partition -> command offset) is seen.

        Returns the events per partition found before `timeout` seconds; a partition missing
        from the result was not decided in time.
        """
        found: dict[int, list[Event]] = {}
        deadline = time.monotonic() + timeout
        try:
            while len(found) < len(wanted):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                polled = self.consumer.poll(timeout_ms=max(1, min(int(left * 1000), 500)))
                for tp, records in polled.items():
                    offset = wanted.get(tp.partition)
                    if offset is None or tp.partition in found:
                        continue
                    for record in records:
                        if record.value is None:
                            continue
                        try:
                            if _head.decode(record.value).offset != offset:
                                continue  # another command's batch: only its head is decoded
                            found[tp.partition] = list(decode_batch(record.value).events)
                        except msgspec.MsgspecError:
                            continue
                        break
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc
        return found

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close(autocommit=False)
