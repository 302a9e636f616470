"""One stream's topic read through ONE consumer for all its partitions: what the projector folds on Kafka.

`KafkaStream` reads each partition with a consumer of its own, which suits the master (one
partition, its own thread). A projector reads every partition of two topics in turn, and there
each consumer cost a connection, a version probe and a metadata request, every partition's
data came in a fetch of its own, and each read at the end waited behind the fetch kafka-python
had sent ahead (the broker answers one connection in order). Profiled: a rebuild of 10,000
records spent most of its 9 s there. Here:

- all partitions are assigned to one consumer (paused until read), so a fetch brings records
  of every partition being read, each kept in its partition's buffer until it is read;
- a partition whose buffer passes `BUFFER_BYTES` is paused until it is read down, so memory
  stays bounded however far ahead the other partitions are;
- the broker holds an empty fetch for at most `READ_FETCH_WAIT_MS`: `read` never waits for
  new records, as the `Stream` contract says.

Read-only (a projector never appends). Thread-safe: one lock, reads are short.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kerr

from easysched_es.log.base import LogError, Record
from easysched_es.log.kafka import FAST_CONSUMER, READ_FETCH_WAIT_MS, KafkaSettings, describe_failure, record_of

__all__ = ["KafkaTopicReader"]

# A partition read ahead of its reader holds at most this much before it is paused.
BUFFER_BYTES = 64 << 20


class MissingTopic(LogError):
    """The stream's topic does not exist (yet)."""


@dataclass
class _Part:
    """One partition: the records fetched in [low, high) that were not yet read past, and their size."""

    tp: TopicPartition
    low: int = 0
    high: int = 0
    records: list[Record] = field(default_factory=list)
    size: int = 0
    active: bool = False  # seeked and fetching (else paused)

    def drop_below(self, start: int) -> None:
        i = bisect.bisect_left(self.records, start, key=lambda r: r.offset)
        if i:
            self.size -= sum(len(r.payload) for r in self.records[:i])
            del self.records[:i]
        self.low = start


class KafkaTopicReader:
    """The `Stream` reading side of `<prefix>.<name>`, through one consumer (see the module docstring)."""

    def __init__(self, settings: KafkaSettings, name: str, *, partitions: int | None = None,
                 read_timeout: float | None = None) -> None:
        self.settings = settings
        self.name = name
        self.topic = settings.topic(name)
        self.read_timeout = read_timeout if read_timeout is not None else (settings.timeout or 10.0)
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._parts: dict[int, _Part] = {}
        self._closed = False
        self._partitions = partitions if partitions is not None else self._count()

    # ---- the consumer --------------------------------------------------------------------

    def _kafka(self) -> KafkaConsumer:
        if self._closed:
            raise LogError(f"the Kafka reader of {self.topic} is closed")
        if self._consumer is None:
            try:
                self._consumer = KafkaConsumer(
                    **self.settings.consumer(), group_id=None, enable_auto_commit=False,
                    isolation_level="read_committed", auto_offset_reset="earliest", allow_auto_create_topics=False,
                    **{**FAST_CONSUMER, "fetch_max_wait_ms": READ_FETCH_WAIT_MS},
                )
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc
        return self._consumer

    def _count(self) -> int:
        try:
            parts = self._kafka().partitions_for_topic(self.topic)
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc
        if not parts:
            self.close()
            raise MissingTopic(f"topic {self.topic} does not exist at {self.settings.bootstrap}; start a master first")
        return len(parts)

    def _part(self, partition: int) -> _Part:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"topic {self.topic} has partitions 0..{self._partitions - 1}, not {partition}")
        if not self._parts:
            consumer = self._kafka()
            self._parts = {p: _Part(TopicPartition(self.topic, p)) for p in range(self._partitions)}
            tps = [part.tp for part in self._parts.values()]
            consumer.assign(tps)
            consumer.pause(*tps)  # nothing is fetched for a partition before it is read
        return self._parts[partition]

    @property
    def partitions(self) -> int:
        """The topic's partition count."""
        return self._partitions

    # ---- reading -------------------------------------------------------------------------

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        """The committed records at or after `start` that the broker holds now (maybe none), up to `max_bytes`."""
        with self._lock:
            try:
                part = self._part(partition)
                consumer = self._kafka()
                if not (part.active and part.low <= start <= part.high):
                    if start >= self._end(part.tp):
                        return []  # at or past the end (seeking there would reset to the start)
                    consumer.seek(part.tp, start)
                    part.records, part.size, part.low, part.high = [], 0, start, start
                    if not part.active:
                        consumer.resume(part.tp)
                        part.active = True
                else:
                    part.drop_below(start)
                    if part.size < BUFFER_BYTES and part.tp in consumer.paused():
                        consumer.resume(part.tp)
                if not part.records:
                    self._fill(part)
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc
            out: list[Record] = []
            budget = max_bytes
            for record in part.records:
                if out and len(record.payload) > budget:
                    break
                out.append(record)
                budget -= len(record.payload)
            return out

    def prefetch(self, starts: dict[int, int]) -> None:
        """Start fetching every partition from its start at once (the reader is about to read them all).

        A projector calls it before reading each partition in turn: then one fetch brings records
        of all of them, instead of one partition's fetch after another's.
        """
        with self._lock:
            try:
                parts = {p: self._part(p) for p in starts}
                moved = {p: s for p, s in starts.items()
                         if not (parts[p].active and parts[p].low <= s <= parts[p].high)}
                if not moved:
                    return
                consumer = self._kafka()
                ends = consumer.end_offsets([parts[p].tp for p in moved])
                for p, start in moved.items():
                    part = parts[p]
                    if start >= ends[part.tp]:
                        continue  # at the end: nothing to fetch (and seeking there would reset it)
                    consumer.seek(part.tp, start)
                    part.records, part.size, part.low, part.high = [], 0, start, start
                    if not part.active:
                        consumer.resume(part.tp)
                        part.active = True
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc

    def _fill(self, part: _Part) -> None:
        """Poll until `part` has records, or its position reaches the end; keep what others get."""
        consumer = self._kafka()
        deadline = time.monotonic() + self.read_timeout
        end: int | None = None
        while True:
            polled = consumer.poll(timeout_ms=20, max_records=FAST_CONSUMER["max_poll_records"])
            for tp, batch in polled.items():
                self._keep(self._parts[tp.partition], batch, consumer)
            if part.records:
                return
            position = consumer.position(part.tp)
            part.high = max(part.high, position)  # past transaction markers too
            if end is None:
                end = self._end(part.tp)
            if position >= end or time.monotonic() > deadline:
                return

    def _keep(self, part: _Part, batch: list[Any], consumer: KafkaConsumer) -> None:
        fresh = [record_of(r) for r in batch if r.offset >= part.high]
        if not fresh:
            return
        part.records.extend(fresh)
        part.size += sum(len(r.payload) for r in fresh)
        part.high = fresh[-1].offset + 1
        if part.size >= BUFFER_BYTES:
            consumer.pause(part.tp)  # read far enough ahead: resumed when its reader catches up

    def _end(self, tp: TopicPartition) -> int:
        return int(self._kafka().end_offsets([tp])[tp])

    def end(self, partition: int = 0) -> int:
        """The (last stable) end offset: the next record lands at or after it."""
        with self._lock:
            try:
                return self._end(self._part(partition).tp)
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc

    def append(self, payloads: Sequence[bytes], partition: int = 0) -> list[int]:
        """Not supported: this reader is read-only (produce with `KafkaStream`)."""
        raise LogError(f"the reader of {self.topic} is read-only; produce with KafkaStream")

    def close(self) -> None:
        """Close the consumer (idempotent)."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
                self._consumer = None
            self._closed = True

    def __enter__(self) -> KafkaTopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KafkaTopicReader({self.topic!r} at {self.settings.bootstrap})"


def projection_streams(settings: KafkaSettings) -> tuple[KafkaTopicReader, KafkaTopicReader]:
    """The events and commands readers a projector folds (the topics created if missing).

    Every broker operation is bounded by `settings.timeout` (the CLI's `--kafka-timeout`), the
    topic lookup at start included: with the broker down, a projector fails within it, saying so.
    """
    from easysched_es.log.kafka import ensure_topics

    readers: list[KafkaTopicReader] = []
    try:
        for name in ("events", "commands"):
            try:
                readers.append(KafkaTopicReader(settings, name))  # its consumer's metadata counts the partitions
            except MissingTopic:
                counts = ensure_topics(settings)  # an admin client only when a topic is missing
                readers.append(KafkaTopicReader(settings, name, partitions=counts[settings.topic(name)]))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers[0], readers[1]
