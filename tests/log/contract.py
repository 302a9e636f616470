"""The contract every log adapter passes (embedded file log, Kafka).

Subclass `StreamContract` in a `test_*.py` module and provide a `make_stream` fixture: a
`StreamFactory` returning a new `Stream` instance. Calls with the same `name` within one
test open the same underlying stream (a new instance: used to test durability across
close and reopen); different names, or different tests, get independent empty streams.
The fixture should close what it opened at teardown (closing twice must be harmless).

Reads never block, and some adapters make appended records visible only after a while
(Kafka), so the tests read through `read_until`, which polls with a deadline instead of
sleeping and hoping. Everything is partition-aware: tests spread their records over
`range(stream.partitions)`.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Protocol

import pytest

from easysched_es.log.base import Record, Stream

# Generous for a broker; an embedded stream answers at once.
DEADLINE_S = 30.0


class StreamFactory(Protocol):
    def __call__(self, name: str = "stream") -> Stream: ...


def read_until(
    stream: Stream, partition: int, start: int, count: int, max_bytes: int = 4 << 20
) -> list[Record]:
    """Read from `start` until at least `count` records came back; fail at the deadline."""
    records: list[Record] = []
    pos = start
    deadline = time.monotonic() + DEADLINE_S
    while len(records) < count:
        batch = stream.read(pos, partition, max_bytes)
        if batch:
            records.extend(batch)
            pos = batch[-1].next
        elif time.monotonic() > deadline:
            pytest.fail(f"partition {partition}: only {len(records)} of {count} records after {DEADLINE_S}s")
        else:
            time.sleep(0.01)  # polling interval, not a wait for an event we could observe
    return records


def read_all(stream: Stream, partition: int, start: int, count: int) -> list[Record]:
    """`read_until` exactly `count` records, then check nothing more follows."""
    records = read_until(stream, partition, start, count)
    assert len(records) == count, f"expected {count} records, got {len(records)}"
    assert stream.read(records[-1].next if records else start, partition) == []
    return records


def payloads(records: list[Record]) -> list[bytes]:
    assert all(r.corrupt is None for r in records), [r.corrupt for r in records if r.corrupt]
    return [r.payload for r in records]


def check_chain(records: list[Record]) -> None:
    """Offsets grow strictly and each record starts at or after the previous one's `next`."""
    for a, b in itertools.pairwise(records):
        assert a.offset < a.next <= b.offset, (a, b)


class StreamContract:
    """Tests every `Stream` adapter must pass; subclasses provide `make_stream`."""

    @pytest.fixture
    def make_stream(self) -> StreamFactory:
        raise NotImplementedError("subclasses provide a make_stream fixture")

    def test_partitions_positive(self, make_stream: StreamFactory) -> None:
        assert make_stream().partitions >= 1

    def test_append_returns_increasing_offsets(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            first = stream.append([b"a", b"bb", b"ccc"], partition)
            second = stream.append([b"dddd"], partition)
            offsets = first + second
            assert len(offsets) == 4
            assert offsets == sorted(set(offsets)), offsets

    def test_read_from_zero_returns_everything_in_order(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            sent = [f"p{partition}-{i}".encode() for i in range(50)]
            offsets = stream.append(sent[:20], partition) + stream.append(sent[20:], partition)
            records = read_all(stream, partition, 0, len(sent))
            assert payloads(records) == sent
            assert [r.offset for r in records] == offsets
            check_chain(records)

    def test_read_resumes_exactly_from_next(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            stream.append([b"one", b"two", b"three"], partition)
            records = read_all(stream, partition, 0, 3)
            middle = read_until(stream, partition, records[0].next, 2)
            assert middle == records[1:]
            assert read_until(stream, partition, records[1].next, 1) == records[2:]
            # What is appended later is found from the last `next`, and nothing before it.
            stream.append([b"four"], partition)
            later = read_all(stream, partition, records[-1].next, 1)
            assert payloads(later) == [b"four"]
            assert later[0].offset >= records[-1].next

    def test_read_in_small_pages(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        sent = [bytes([i]) * 100 for i in range(40)]
        for partition in range(stream.partitions):
            stream.append(sent, partition)
            got: list[Record] = []
            pos = 0
            deadline = time.monotonic() + DEADLINE_S
            while len(got) < len(sent):
                batch = stream.read(pos, partition, max_bytes=250)
                if batch:
                    # max_bytes is a soft cap but never starves the reader.
                    assert sum(len(r.payload) for r in batch) <= 250 or len(batch) == 1
                    got.extend(batch)
                    pos = batch[-1].next
                assert time.monotonic() < deadline
            assert payloads(got) == sent
            assert stream.read(0, partition, max_bytes=0)[:1] == got[:1]

    def test_read_past_end_returns_nothing(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            assert stream.read(0, partition) == []
            stream.append([b"x", b"y"], partition)
            records = read_all(stream, partition, 0, 2)
            assert stream.read(records[-1].next, partition) == []
            assert stream.read(stream.end(partition), partition) == []
            assert stream.read(stream.end(partition) + 1_000_000, partition) == []

    def test_end_is_past_every_appended_offset(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            empty_end = stream.end(partition)
            offsets = stream.append([b"a" * 10, b"b" * 20], partition)
            end = stream.end(partition)
            assert end > max(offsets)
            assert offsets[0] >= empty_end
            records = read_all(stream, partition, 0, 2)
            assert end >= records[-1].next
            more = stream.append([b"c"], partition)
            assert more[0] >= end > offsets[-1]

    def test_empty_append(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            end = stream.end(partition)
            assert stream.append([], partition) == []
            assert stream.end(partition) == end
            assert stream.read(0, partition) == []

    def test_empty_payload_round_trips(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        for partition in range(stream.partitions):
            stream.append([b"", b"x", b""], partition)
            assert payloads(read_all(stream, partition, 0, 3)) == [b"", b"x", b""]

    def test_large_payloads(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        big = [bytes([i]) * (1 << 20) for i in range(3)]
        for partition in range(stream.partitions):
            stream.append([b"small", big[0]], partition)
            stream.append(big[1:], partition)
            # A small max_bytes still returns a record bigger than itself.
            records = read_until(stream, partition, 0, 4, max_bytes=1024)
            assert payloads(records) == [b"small", *big]
            check_chain(records)

    def test_many_small_appends(self, make_stream: StreamFactory) -> None:
        stream = make_stream()
        count = 300
        for partition in range(stream.partitions):
            offsets = [stream.append([f"{partition}:{i}".encode()], partition)[0] for i in range(count)]
            assert offsets == sorted(set(offsets))
            records = read_all(stream, partition, 0, count)
            assert payloads(records) == [f"{partition}:{i}".encode() for i in range(count)]
            assert [r.offset for r in records] == offsets

    def _concurrent_appends(self, streams: list[Stream], writers: int, batches: int) -> None:
        """`writers` threads append `batches` batches each, spread over all partitions."""
        partitions = streams[0].partitions
        barrier = threading.Barrier(writers)
        errors: list[BaseException] = []
        returned: dict[tuple[int, int], list[int]] = {}

        def write(w: int) -> None:
            stream = streams[w % len(streams)]
            try:
                barrier.wait(timeout=DEADLINE_S)
                for b in range(batches):
                    batch = [f"{w}:{b}:{k}".encode() for k in range(1 + b % 3)]
                    partition = (w + b) % partitions
                    returned.setdefault((w, partition), []).extend(stream.append(batch, partition))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=DEADLINE_S)
            assert not t.is_alive(), "a writer thread hung"
        assert not errors, errors

        reader = streams[0]
        for partition in range(partitions):
            expected = {
                f"{w}:{b}:{k}".encode()
                for w in range(writers)
                for b in range(batches)
                if (w + b) % partitions == partition
                for k in range(1 + b % 3)
            }
            records = read_all(reader, partition, 0, len(expected))
            got = payloads(records)
            assert len(got) == len(set(got)) == len(expected), "records lost or duplicated"
            assert set(got) == expected
            check_chain(records)
            by_offset = {r.offset: r.payload for r in records}
            for w in range(writers):
                mine = [p for p in got if p.split(b":")[0] == str(w).encode()]
                assert mine == sorted(mine, key=lambda p: tuple(int(x) for x in p.split(b":")))
                # Each offset a writer was given holds one of its own records.
                for offset in returned.get((w, partition), []):
                    assert by_offset[offset].split(b":")[0] == str(w).encode()

    def test_concurrent_appends_from_threads_one_instance(self, make_stream: StreamFactory) -> None:
        self._concurrent_appends([make_stream()], writers=8, batches=40)

    def test_concurrent_appends_from_threads_own_instances(self, make_stream: StreamFactory) -> None:
        streams = [make_stream("shared") for _ in range(4)]
        self._concurrent_appends(streams, writers=4, batches=40)

    def test_durable_across_close_and_reopen(self, make_stream: StreamFactory) -> None:
        first = make_stream("durable")
        sent: dict[int, list[bytes]] = {}
        for partition in range(first.partitions):
            sent[partition] = [f"{partition}:{i}".encode() for i in range(25)]
            first.append(sent[partition][:10], partition)
            first.append(sent[partition][10:], partition)
        ends = [first.end(p) for p in range(first.partitions)]
        first.close()
        first.close()  # harmless twice

        second = make_stream("durable")
        assert second.partitions == len(sent)
        for partition in range(second.partitions):
            records = read_all(second, partition, 0, len(sent[partition]))
            assert payloads(records) == sent[partition]
            assert second.end(partition) >= ends[partition]
            offset = second.append([b"after reopen"], partition)[0]
            assert offset >= records[-1].next
            assert payloads(read_all(second, partition, records[-1].next, 1)) == [b"after reopen"]
