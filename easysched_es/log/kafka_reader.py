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
from easysched_es.log.kafka import (
    FAST_CONSUMER,
    READ_FETCH_WAIT_MS,
    KafkaSettings,
    describe_failure,
    record_of,
    within_budget,
)

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


class _Shared:
    """The one consumer of one or more topics' readers, their lock and every partition's buffer."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.consumer: KafkaConsumer | None = None
        self.counts: dict[str, int] = {}
        self.parts: dict[TopicPartition, _Part] = {}
        self.users = 0
        self.closed = False

    def kafka(self) -> KafkaConsumer:
        if self.closed:
            raise LogError(f"the Kafka reader of {', '.join(self.counts) or 'its topics'} is closed")
        if self.consumer is None:
            try:
                self.consumer = KafkaConsumer(
                    **self.settings.consumer(), group_id=None, enable_auto_commit=False,
                    isolation_level="read_committed", auto_offset_reset="earliest", allow_auto_create_topics=False,
                    **{**FAST_CONSUMER, "fetch_max_wait_ms": READ_FETCH_WAIT_MS},
                )
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc
        return self.consumer

    def register(self, topic: str, partitions: int | None) -> int:
        """Add a topic (before the first read: one assignment holds every partition); its partition count."""
        with self.lock:
            if self.parts:
                raise LogError(f"topic {topic} joined a Kafka reader after its first read")
            if partitions is None:
                try:
                    found = self.kafka().partitions_for_topic(topic)
                except kerr.KafkaError as exc:
                    raise LogError(describe_failure(exc, self.settings)) from exc
                if not found:
                    raise MissingTopic(f"topic {topic} does not exist at {self.settings.bootstrap}; "
                                       "start a master first")
                partitions = len(found)
            self.counts[topic] = partitions
            self.users += 1
            return partitions

    def part(self, tp: TopicPartition) -> _Part:
        if not self.parts:
            consumer = self.kafka()
            self.parts = {TopicPartition(t, p): _Part(TopicPartition(t, p))
                          for t, n in self.counts.items() for p in range(n)}
            consumer.assign(list(self.parts))
            consumer.pause(*self.parts)  # nothing is fetched for a partition before it is read
        return self.parts[tp]

    def release(self) -> None:
        """One reader less; the consumer closes with the last."""
        with self.lock:
            self.users -= 1
            if self.users <= 0:
                self.close_now()

    def close_now(self) -> None:
        """Close the consumer whoever still uses it (idempotent)."""
        with self.lock:
            self.closed = True
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
                self.consumer = None


class KafkaTopicReader:
    """The `Stream` reading side of `<prefix>.<name>`, through one consumer (see the module docstring).

    Readers made with the same `shared` (see `projection_streams`) share that consumer.
    """

    def __init__(self, settings: KafkaSettings, name: str, *, partitions: int | None = None,
                 read_timeout: float | None = None, shared: _Shared | None = None) -> None:
        self.settings = settings
        self.name = name
        self.topic = settings.topic(name)
        self.read_timeout = read_timeout if read_timeout is not None else (settings.timeout or 10.0)
        self._shared = shared if shared is not None else _Shared(settings)
        self._lock = self._shared.lock
        self._closed = False
        try:
            self._partitions = self._shared.register(self.topic, partitions)
        except LogError:
            if shared is None:
                self._shared.close_now()
            raise

    def _kafka(self) -> KafkaConsumer:
        if self._closed:
            raise LogError(f"the Kafka reader of {self.topic} is closed")
        return self._shared.kafka()

    def _part(self, partition: int) -> _Part:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"topic {self.topic} has partitions 0..{self._partitions - 1}, not {partition}")
        return self._shared.part(TopicPartition(self.topic, partition))

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
            return within_budget(part.records, max_bytes)

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
                self._keep(self._shared.parts[tp], batch, consumer)
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
        """Close this reader (idempotent); the consumer closes with the last reader sharing it."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._shared.release()

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

    names = ("events", "commands")
    shared = _Shared(settings)  # one consumer, so one connection set-up, for both topics
    try:
        try:
            readers = [KafkaTopicReader(settings, name, shared=shared) for name in names]
        except MissingTopic:
            shared.close_now()
            made = ensure_topics(settings)  # an admin client only when a topic is missing
            shared = _Shared(settings)
            readers = [KafkaTopicReader(settings, name, partitions=made[settings.topic(name)], shared=shared)
                       for name in names]
    except BaseException:
        shared.close_now()
        raise
    return readers[0], readers[1]
