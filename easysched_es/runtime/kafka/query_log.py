"""The Kafka log as the CLI's queries read it: one consumer, the newest snapshot, and the tail after it.

`status`, `status INSTANCE`, `timers`, `trace`, `wait` and the other queries on Kafka fold each
partition they need from its masters' newest snapshot (`<prefix>.snapshots`, compacted, one key
per partition, written every `--snapshot-every` commands inside the master's transaction) plus
the commands after the snapshot's position. `QueryLog` is the `LogSource` they fold, built for
a short-lived process:

- ONE group-less `read_committed` consumer for every topic and partition: a new kafka-python
  client costs a connection, a version probe and a metadata request (about 0.1-0.3 s on a busy
  machine), and `KafkaLog` opened one per stream plus one per end-offset lookup;
- the end offsets a read needs in one request, and several partitions fetched side by side
  (`prefetch`: every partition's snapshot, then every partition's tail, for `status`/`timers`);
- a snapshot is looked for among the last few records of its partition only (the newest is
  the last data record; a transaction marker follows it), the older window of 16 only if none
  of those fits: a busy partition's snapshot is megabytes, reading 16 of them is not free;
- what was read is kept: a fold that reads the same range again (a refold past a `skip`, the
  events after the commands) costs no fetch. A read at or past what was fetched asks the
  broker again, so `wait` sees new commands.

`used()` says what the answer came from (per partition: the snapshot's position or none, and
the end of the tail), for the `source` field of `--json` answers.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kerr

from easysched_es.core.codec import decode_snapshot
from easysched_es.core.state import State
from easysched_es.log.base import LogError, Record
from easysched_es.log.kafka import FAST_CONSUMER, KafkaSettings, describe_failure, record_of

__all__ = ["QueryLog"]

# Offsets of the snapshots partition looked at first: the newest snapshot and its commit marker,
# and the one before (a snapshot that does not decode). Then the window `load_snapshot` always had.
NEAR_WINDOW = 4
FAR_WINDOW = 16
# The broker holds an empty fetch this long at most: a query never waits on one longer.
FETCH_WAIT_MS = 20


class _SnapshotHead(msgspec.Struct):
    partition: int = -1
    position: int = 0


_snapshot_head = msgspec.msgpack.Decoder(_SnapshotHead)


@dataclass
class _Buffer:
    """The records of one topic-partition fetched so far: every record in [low, high)."""

    low: int
    high: int
    records: list[Record] = field(default_factory=list)

    def after(self, start: int) -> list[Record]:
        i = bisect.bisect_left(self.records, start, key=lambda r: r.offset)
        return self.records[i:]


class QueryLog:
    """A `LogSource` over the Kafka topics for one-shot queries (thread-safe; close it when done)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._consumer: KafkaConsumer | None = None
        self._partitions: int | None = None
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._snapshot_payloads: dict[int, list[tuple[int, bytes]]] = {}
        self._used: dict[int, dict[str, Any]] = {}

    # ---- the consumer ------------------------------------------------------------------------

    def _kafka(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                self._consumer = KafkaConsumer(
                    **self.settings.consumer(), group_id=None, enable_auto_commit=False,
                    isolation_level="read_committed", auto_offset_reset="earliest",
                    allow_auto_create_topics=False,
                    **{**FAST_CONSUMER, "fetch_max_wait_ms": FETCH_WAIT_MS},
                )
            except kerr.KafkaError as exc:
                raise LogError(describe_failure(exc, self.settings)) from exc
        return self._consumer

    def _tp(self, stream: str, partition: int) -> TopicPartition:
        return TopicPartition(self.settings.topic(stream), partition)

    def ends(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The last stable end offsets of `tps`, in one request."""
        try:
            return {tp: int(end) for tp, end in self._kafka().end_offsets(list(tps)).items()}
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc

    def fetch(self, starts: dict[TopicPartition, int]) -> dict[TopicPartition, list[Record]]:
        """Every committed record of each topic-partition from its start to its end as of now.

        The partitions are fetched side by side by the one consumer; the result is kept (see
        the module docstring).
        """
        with self._lock:
            ends = self.ends(list(starts))
            out: dict[TopicPartition, list[Record]] = {tp: [] for tp in starts}
            todo = {tp: start for tp, start in starts.items() if start < ends[tp]}
            if todo:
                self._poll_until(todo, ends, out)
            for tp, start in starts.items():
                old = self._buffers.get(tp)
                if old is not None and old.high == start:  # `wait` reading on: keep what it read before
                    old.records.extend(out[tp])
                    old.high = max(start, ends[tp])
                else:
                    self._buffers[tp] = _Buffer(start, max(start, ends[tp]), out[tp])
            return out

    def _poll_until(self, todo: dict[TopicPartition, int], ends: dict[TopicPartition, int],
                    out: dict[TopicPartition, list[Record]]) -> None:
        consumer = self._kafka()
        limit = self.settings.timeout if self.settings.timeout is not None else 30.0
        deadline = time.monotonic() + limit
        try:
            consumer.assign(list(todo))
            consumer.resume(*todo)  # one paused by an earlier fetch stays paused across assign()
            for tp, start in todo.items():
                consumer.seek(tp, start)
            waiting = set(todo)
            while waiting:
                for tp, batch in consumer.poll(timeout_ms=100, max_records=FAST_CONSUMER["max_poll_records"]).items():
                    if tp in waiting:
                        end = ends[tp]
                        out[tp].extend(record_of(r) for r in batch if r.offset < end)
                # The position passes transaction markers too: it reaches the end exactly.
                done = [tp for tp in waiting if consumer.position(tp) >= ends[tp]]
                if done:
                    consumer.pause(*done)
                    waiting.difference_update(done)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(waiting))
                    raise LogError(f"Kafka at {self.settings.bootstrap} did not deliver {names} up to the "
                                   f"end offsets it announced within {limit:g}s; check the broker")
        except kerr.KafkaError as exc:
            raise LogError(describe_failure(exc, self.settings)) from exc

    def read(self, stream: str, start: int, partition: int) -> list[Record]:
        """The committed records of a stream's partition at or after `start` (what was fetched, else now)."""
        tp = self._tp(stream, partition)
        with self._lock:
            buffer = self._buffers.get(tp)
            if buffer is not None and buffer.low <= start < buffer.high:
                return buffer.after(start)
            return self.fetch({tp: start})[tp]

    # ---- LogSource ---------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        """The commands topic's partition count (from the consumer's metadata)."""
        with self._lock:
            if self._partitions is None:
                topic = self.settings.topic("commands")
                try:
                    parts = self._kafka().partitions_for_topic(topic)
                except kerr.KafkaError as exc:
                    raise LogError(describe_failure(exc, self.settings)) from exc
                if not parts:
                    raise LogError(f"topic {topic} does not exist at {self.settings.bootstrap}; start a master first")
                self._partitions = len(parts)
            return self._partitions

    def commands(self) -> _View:
        """The commands topic, read through this log's consumer."""
        return _View(self, "commands")

    def events(self) -> _View:
        """The events topic, read through this log's consumer."""
        return _View(self, "events")

    def prefetch(self, partitions: Iterable[int] | None = None) -> None:
        """Fetch the snapshots, then the commands after them, of several partitions side by side.

        `status` and `timers` fold every partition: this makes that two fetches in all instead
        of two per partition. The folds then read what was fetched.
        """
        chosen = list(range(self.partitions)) if partitions is None else list(partitions)
        self._snapshot_window(chosen, NEAR_WINDOW)
        # Only each snapshot's head is decoded here; the fold decodes the whole of it once.
        self.fetch({self._tp("commands", p): self._head_position(p) for p in chosen})

    def load_snapshot(self, partition: int, until: int | None = None) -> State | None:
        """The newest snapshot of `partition` covering at most command offset `until` (None: any)."""
        covering = None if until is None else until + 1
        with self._lock:
            if partition not in self._snapshot_payloads:
                self._snapshot_window([partition], NEAR_WINDOW)
            state = self._best(partition, covering)
            if state is None and self._snapshot_payloads[partition][:1] != [(-1, b"")]:
                self._snapshot_window([partition], FAR_WINDOW)
                state = self._best(partition, covering)
            self._used[partition] = {"partition": partition,
                                     "snapshot_position": None if state is None else state.position}
            return state

    def _snapshot_window(self, partitions: list[int], window: int) -> None:
        tps = {p: self._tp("snapshots", p) for p in partitions}
        ends = self.ends(list(tps.values()))
        got = self.fetch({tp: max(0, ends[tp] - window) for tp in tps.values()})
        for p, tp in tps.items():
            found = [(r.offset, r.payload) for r in got[tp]]
            if ends[tp] <= window:
                found.insert(0, (-1, b""))  # the window reached the partition's start: nothing older
            self._snapshot_payloads[p] = found

    def _head_position(self, partition: int) -> int:
        """The position of the newest snapshot fetched for `partition` (0 if none), from its head alone."""
        for offset, payload in reversed(self._snapshot_payloads.get(partition, [])):
            if offset < 0:
                continue
            try:
                head = _snapshot_head.decode(payload)
            except msgspec.MsgspecError:
                continue
            if head.partition == partition:
                return head.position
        return 0

    def _best(self, partition: int, covering: int | None) -> State | None:
        """The newest decodable snapshot among those fetched (decoded afresh: a fold mutates its state)."""
        for offset, payload in reversed(self._snapshot_payloads.get(partition, [])):
            if offset < 0:
                continue
            try:
                snap = decode_snapshot(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # `load_snapshot` of the master logs it; a query just uses an older one
            if snap.partition != partition or (covering is not None and snap.position > covering):
                continue
            state = State.restore(snap)
            state.partition = partition
            return state
        return None

    def used(self) -> dict[str, Any]:
        """What the answers came from: per partition folded, its snapshot's position (or None), the tail's end."""
        with self._lock:
            rows = []
            for p, row in sorted(self._used.items()):
                buffer = self._buffers.get(self._tp("commands", p))
                rows.append({**row, "tail_end": None if buffer is None else buffer.high})
            return {"kind": "snapshot+tail", "partitions": rows}

    def forget(self) -> None:
        """Drop what was fetched and which snapshots were seen (a long-lived client, before each query)."""
        with self._lock:
            self._buffers.clear()
            self._snapshot_payloads.clear()
            self._used.clear()

    def close(self) -> None:
        """Close the consumer (idempotent)."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
                self._consumer = None
            self._buffers.clear()

    def __enter__(self) -> QueryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _View:
    """One stream of a `QueryLog`, as the fold reads a `Stream` (closing it closes nothing)."""

    def __init__(self, log: QueryLog, name: str) -> None:
        self.log, self.name = log, name

    @property
    def partitions(self) -> int:
        return self.log.partitions

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        """The records at or after `start` (all that were fetched: the fold takes them in one go)."""
        return self.log.read(self.name, start, partition)

    def end(self, partition: int = 0) -> int:
        tp = self.log._tp(self.name, partition)
        return self.log.ends([tp])[tp]

    def append(self, payloads: Sequence[bytes], partition: int = 0) -> list[int]:
        raise LogError("a query's view of the Kafka log is read-only; use KafkaClient to produce")

    def close(self) -> None:
        return None

    def __enter__(self) -> _View:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
