"""The embedded file log: the shared contract plus what only a file log has (segments, torn tails)."""

from __future__ import annotations

import fcntl
import itertools
import logging
import multiprocessing
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.log.base import LogError, LogLockedError, Record, Stream
from easysched_es.log.embedded import DirectoryLock, EmbeddedStream
from tests.log.contract import StreamContract, StreamFactory, check_chain, payloads

PROCESS_TIMEOUT_S = 60


class TestEmbeddedContract(StreamContract):
    @pytest.fixture
    def make_stream(self, tmp_path: Path) -> Iterator[StreamFactory]:
        opened: list[EmbeddedStream] = []

        def make(name: str = "stream") -> Stream:
            stream = EmbeddedStream(tmp_path / name)
            opened.append(stream)
            return stream

        yield make
        for stream in opened:
            stream.close()


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[EmbeddedStream]:
    with EmbeddedStream(tmp_path / "log", fsync=False) as s:
        yield s


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


def everything(stream: EmbeddedStream) -> list[Record]:
    records = stream.read(0, max_bytes=1 << 30)
    assert records == list(stream.iter_records())
    return records


# ------------------------------------------------------------------------------ framing


def test_file_layout_is_the_documented_framing(stream: EmbeddedStream) -> None:
    offsets = stream.append([b"hello", b"", b"world!"])
    (seg,) = segments(stream.directory)
    assert seg.name == "0" * 20 + ".seg"
    assert seg.read_bytes() == frame(b"hello") + frame(b"") + frame(b"world!")
    assert offsets == [0, 13, 21]
    assert stream.end() == 35
    records = stream.read(0)
    assert [(r.offset, r.next) for r in records] == [(0, 13), (13, 21), (21, 35)]


def test_only_partition_zero(stream: EmbeddedStream) -> None:
    assert stream.partitions == 1
    for call in (
        lambda: stream.append([b"x"], 1),
        lambda: stream.read(0, 1),
        lambda: stream.end(1),
    ):
        with pytest.raises(ValueError, match="one partition"):
            call()


def test_closed_stream_refuses_work(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path)
    stream.close()
    with pytest.raises(LogError, match="closed"):
        stream.append([b"x"])
    with pytest.raises(LogError, match="closed"):
        stream.read(0)


def test_iterators_match_read(stream: EmbeddedStream) -> None:
    sent = [os.urandom(i % 50) for i in range(500)]
    offsets = stream.append(sent[:200]) + stream.append(sent[200:])
    assert list(stream.iter_payloads()) == list(zip(offsets, sent, strict=True))
    assert list(stream.iter_payloads(offsets[123])) == list(zip(offsets[123:], sent[123:], strict=True))
    assert list(stream.iter_payloads(stream.end())) == []
    assert [r.offset for r in stream.iter_records(offsets[7])] == offsets[7:]


def test_record_bigger_than_an_iter_chunk(stream: EmbeddedStream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("easysched_es.log.embedded._ITER_CHUNK", 64)
    sent = [b"a" * 10, b"b" * 500, b"c" * 10, b"d" * 200]
    offsets = stream.append(sent)
    assert list(stream.iter_payloads()) == list(zip(offsets, sent, strict=True))
    assert payloads(list(stream.iter_records())) == sent


def test_read_takes_no_lock(stream: EmbeddedStream) -> None:
    stream.append([b"before"])
    # Another process holding the append lock (mid-append) must not stall readers.
    fd = os.open(stream.directory / "append.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert payloads(stream.read(0)) == [b"before"]
        assert stream.end() == 14
        assert [p for _, p in stream.iter_payloads()] == [b"before"]
    finally:
        os.close(fd)


def test_fsync_on(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=64, fsync=True) as s:
        for i in range(10):
            s.append([bytes([i]) * 30])
        assert len(segments(tmp_path)) > 1
        assert [r.payload for r in s.read(0)] == [bytes([i]) * 30 for i in range(10)]


# ----------------------------------------------------------------------------- segments


def test_segments_roll_and_offsets_stay_global(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=200, fsync=False) as s:
        sent = [f"record-{i}".encode() * (1 + i % 4) for i in range(120)]
        offsets: list[int] = []
        for i in range(0, len(sent), 3):
            offsets += s.append(sent[i : i + 3])

        files = segments(tmp_path)
        assert len(files) > 10
        # Each segment is named after its base, which is the previous base plus its size.
        base = 0
        for f in files:
            assert int(f.stem) == base
            base += f.stat().st_size
        assert s.end() == base

        records = everything(s)
        assert payloads(records) == sent
        assert [r.offset for r in records] == offsets
        check_chain(records)
        assert all(a.next == b.offset for a, b in itertools.pairwise(records))
        # Reading from any record, in particular from each segment base, resumes exactly there.
        for f in files:
            assert s.read(int(f.stem), max_bytes=1)[0].offset == int(f.stem)
        for k in (1, 37, 119):
            assert payloads(s.read(offsets[k], max_bytes=1 << 20)) == sent[k:]
        # Small pages walk across segment boundaries too.
        pos, paged = 0, []
        while batch := s.read(pos, max_bytes=30):
            paged += batch
            pos = batch[-1].next
        assert paged == records

        # A second instance opened before the rolls still follows them.
        with EmbeddedStream(tmp_path, segment_bytes=200, fsync=False) as other:
            assert other.read(offsets[-1]) == records[-1:]
            late = s.append([b"x" * 300, b"y"])
            assert payloads(other.read(offsets[-1])) == [sent[-1], b"x" * 300, b"y"]
            assert other.end() == s.end() == late[-1] + 9


def test_reader_started_before_a_roll_finds_the_new_segment(tmp_path: Path) -> None:
    with (
        EmbeddedStream(tmp_path, segment_bytes=100, fsync=False) as small,
        EmbeddedStream(tmp_path, fsync=False) as big,
    ):
        big.append([b"a" * 120])  # `big` now has segment 0 open for appending
        first = big.read(0)
        assert big.read(first[-1].next) == []
        small.append([b"b", b"c"])  # 128 >= 100: rolls, lands in a new segment
        assert [int(f.stem) for f in segments(tmp_path)] == [0, 128]
        assert payloads(big.read(first[-1].next)) == [b"b", b"c"]
        # An appender with a bigger segment_bytes must not write into the rolled segment.
        offsets = big.append([b"d"])
        assert offsets[0] > 128
        assert segments(tmp_path)[0].stat().st_size == 128
        assert payloads(small.read(offsets[0])) == [b"d"]
        assert [r.payload for r in everything(small)] == [b"a" * 120, b"b", b"c", b"d"]


def test_damaged_end_of_an_earlier_segment_is_reported_and_skipped(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=50, fsync=False) as s:
        offsets = [s.append([bytes([65 + i]) * 30])[0] for i in range(4)]
        first, second = segments(tmp_path)[:2]
        # As if a crash without fsync lost the end of a segment that had already rolled.
        os.truncate(first, first.stat().st_size - 5)
        records = s.read(0)
        assert records[0].corrupt is None
        assert records[1].corrupt is not None and "truncated record" in records[1].corrupt
        assert records[1].next == int(second.stem)
        assert [r.payload for r in records[2:]] == [bytes([65 + i]) * 30 for i in range(2, 4)]
        assert [r.offset for r in records] == offsets
        with pytest.raises(LogError, match="truncated record"):
            list(s.iter_payloads())


@pytest.mark.slow
def test_concurrent_appends_from_processes(tmp_path: Path) -> None:
    writers, batches = 4, 60
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(writers) as pool:
        results = pool.starmap_async(
            _append_from_process, [(str(tmp_path), w, batches) for w in range(writers)]
        ).get(timeout=PROCESS_TIMEOUT_S)

    with EmbeddedStream(tmp_path, fsync=False) as s:
        records = everything(s)
    got = payloads(records)
    expected = {f"{w}:{b}:{k}".encode() for w in range(writers) for b in range(batches) for k in range(2)}
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected
    assert len(segments(tmp_path)) > 1  # the writers rolled segments under contention
    by_offset = {r.offset: r.payload for r in records}
    for w, offsets in enumerate(results):
        mine = [p for p in got if p.startswith(f"{w}:".encode())]
        assert mine == [f"{w}:{b}:{k}".encode() for b in range(batches) for k in range(2)]
        assert [by_offset[o] for o in offsets] == mine


def _append_from_process(directory: str, writer: int, batches: int) -> list[int]:
    offsets: list[int] = []
    with EmbeddedStream(directory, segment_bytes=2048, fsync=False) as s:
        for b in range(batches):
            offsets += s.append([f"{writer}:{b}:{k}".encode() for k in range(2)])
    return offsets


# ---------------------------------------------------------------------------- torn tails

TAIL = b"the last record, " * 6


def _tear_mid_header(seg: Path, last: int) -> None:
    os.truncate(seg, last + 3)


def _tear_mid_payload(seg: Path, last: int) -> None:
    os.truncate(seg, last + 8 + len(TAIL) // 2)


def _flip_last_payload_byte(seg: Path, last: int) -> None:
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))


@pytest.mark.parametrize("tear", [_tear_mid_header, _tear_mid_payload, _flip_last_payload_byte])
def test_torn_tail_is_hidden_then_cut(tmp_path: Path, tear: object, caplog: pytest.LogCaptureFixture) -> None:
    assert callable(tear)
    with EmbeddedStream(tmp_path) as s:
        good = [b"one", b"two", b"three"]
        offsets = s.append(good) + s.append([TAIL])
        (seg,) = segments(tmp_path)
        tear(seg, offsets[-1])
        torn_size = seg.stat().st_size

        assert payloads(s.read(0)) == good
        assert s.read(offsets[-1]) == []
        assert [p for _, p in s.iter_payloads()] == good
        assert payloads(list(s.iter_records())) == good

        with caplog.at_level(logging.WARNING, logger="easysched_es.log.embedded"):
            cut = s.repair_tail()
        assert cut == torn_size - offsets[-1] > 0
        assert seg.stat().st_size == offsets[-1]
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert str(seg) in warning.getMessage()
        assert f"offset {offsets[-1]}" in warning.getMessage()
        assert f"{cut} bytes" in warning.getMessage()

        assert s.repair_tail() == 0
        assert s.append([b"four"]) == [offsets[-1]]
        assert payloads(s.read(0)) == [*good, b"four"]


def test_repair_of_a_clean_or_empty_log_cuts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedStream(tmp_path) as s:
        assert s.repair_tail() == 0
        s.append([b"a", b"b"])
        assert s.repair_tail() == 0
    assert not caplog.records


def test_record_being_written_appears_once_complete(stream: EmbeddedStream) -> None:
    stream.append([b"done"])
    (seg,) = segments(stream.directory)
    whole = frame(b"in flight")
    # Write the record in pieces, as a slow writer would, checking the reader at each step.
    written = 0
    for upto in (3, 8, 12, len(whole)):
        with seg.open("ab") as f:
            f.write(whole[written:upto])
        written = upto
        expected = [b"done", b"in flight"] if upto == len(whole) else [b"done"]
        assert payloads(stream.read(0)) == expected
        assert [p for _, p in stream.iter_payloads()] == expected


def test_corrupt_record_in_the_middle_is_returned_marked(stream: EmbeddedStream) -> None:
    sent = [b"alpha", b"bravo", b"charlie", b"delta"]
    offsets = stream.append(sent)
    (seg,) = segments(stream.directory)
    data = bytearray(seg.read_bytes())
    data[offsets[1] + 8] ^= 0x01
    seg.write_bytes(bytes(data))

    records = stream.read(0)
    assert [r.offset for r in records] == offsets
    bad = records[1]
    assert bad.payload == b""
    assert bad.next == offsets[2]
    assert bad.corrupt == f"CRC mismatch at offset {offsets[1]} (record of 5 bytes)"
    assert [r.payload for r in records if r.corrupt is None] == [b"alpha", b"charlie", b"delta"]
    assert list(stream.iter_records()) == records
    assert stream.read(offsets[2]) == records[2:]
    with pytest.raises(LogError, match=f"CRC mismatch at offset {offsets[1]}"):
        list(stream.iter_payloads())
    assert stream.repair_tail() == 0  # damage in the middle is reported, never cut


def test_bad_last_record_before_a_partial_one_is_tail(stream: EmbeddedStream) -> None:
    offsets = stream.append([b"ok", b"bad!"])
    (seg,) = segments(stream.directory)
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0x01
    seg.write_bytes(bytes(data) + frame(b"partial")[:10])
    torn_size = seg.stat().st_size
    # Nothing complete follows the bad record yet: it may be a torn write, not damage.
    assert payloads(stream.read(0)) == [b"ok"]
    assert stream.repair_tail() == torn_size - offsets[1]  # the bad record and the partial one
    assert seg.stat().st_size == offsets[1]


# -------------------------------------------------------------------------- property test


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(st.binary(max_size=300), max_size=6), max_size=12),
    segment_bytes=st.integers(min_value=1, max_value=2000),
    max_bytes=st.integers(min_value=0, max_value=700),
)
def test_read_and_iterators_agree_with_what_was_appended(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[bytes]],
    segment_bytes: int,
    max_bytes: int,
) -> None:
    directory = tmp_path_factory.mktemp("prop")
    with EmbeddedStream(directory, segment_bytes=segment_bytes, fsync=False) as s:
        sent: list[bytes] = []
        offsets: list[int] = []
        for batch in batches:
            offsets += s.append(batch)
            sent += batch
        assert offsets == sorted(set(offsets))
        pos, got = 0, []
        while page := s.read(pos, max_bytes=max_bytes):
            got += page
            pos = page[-1].next
        assert payloads(got) == sent
        assert [r.offset for r in got] == offsets
        assert list(s.iter_payloads()) == list(zip(offsets, sent, strict=True))
        assert s.end() == (got[-1].next if got else 0)


# ------------------------------------------------------------------------- directory lock


def test_directory_lock_refuses_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "master.lock"
    ctx = multiprocessing.get_context("spawn")
    with DirectoryLock(path, "the master lock of partition 0") as lock:
        assert lock.held
        assert path.read_text().strip() == str(os.getpid())
        with ctx.Pool(1) as pool:
            refused = pool.apply_async(_try_lock, (str(path),)).get(timeout=PROCESS_TIMEOUT_S)
            assert refused is not None
            assert f"is already held by pid {os.getpid()}" in refused
            assert "the master lock of partition 0" in refused
            assert "another `easysched run` on this data dir?" in refused
            lock.release()
            assert pool.apply_async(_try_lock, (str(path),)).get(timeout=PROCESS_TIMEOUT_S) is None
    assert not lock.held


def _try_lock(path: str) -> str | None:
    try:
        with DirectoryLock(Path(path), "the master lock of partition 0"):
            return None
    except LogLockedError as e:
        return str(e)


def test_directory_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.lock"
    with (
        DirectoryLock(path, "the master lock"),
        pytest.raises(LogLockedError, match=f"held by pid {os.getpid()}"),
    ):
        DirectoryLock(path, "the master lock").acquire()
    with DirectoryLock(path, "the master lock"):
        pass


def test_last_record_reads_only_the_newest_segment(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path / "s", segment_bytes=64)
    assert stream.last_record() is None
    offsets = stream.append([bytes([i]) * 40 for i in range(10)])
    last = stream.last_record()
    assert last is not None and last.offset == offsets[-1] and last.payload == bytes([9]) * 40
