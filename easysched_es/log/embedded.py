"""The embedded log: one stream as segment files in a directory, for a single machine.

Layout of a stream directory:

- `<20-digit base offset>.seg`: segment files. A record is an 8-byte header
  `struct.pack("<II", len(payload), crc32c(payload))` followed by the payload.
- `append.lock`: the advisory lock every appender takes for the length of one `append`.

Offsets are global byte positions: a record's offset is its segment's base plus the byte
position of its header inside the segment. A new segment's base is the previous segment's
base plus its final size, so offsets grow across segments and a reader that reaches the end
of a segment continues in the file named after exactly that offset.

Concurrency: any number of processes may append (each append holds `append.lock`, writes
all its records with one `O_APPEND` write and fdatasyncs). Readers take no lock at all; they
see a prefix of what was written and stop at a record that is not complete yet.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from easysched_es.log.base import LogError, LogLockedError, Record
from easysched_es.log.crc import crc32c
from easysched_es.log.tail import TailMarker, heal

__all__ = ["DirectoryLock", "EmbeddedStream"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_HEADER_SIZE = _HEADER.size
_MAX_PAYLOAD = 0xFFFFFFFF
_SEGMENT_SUFFIX = ".seg"
_SEGMENT_DIGITS = 20
# Big enough that a replay makes few syscalls, small enough to keep memory flat.
_ITER_CHUNK = 16 << 20
# Extra bytes read beyond the payload budget so that headers do not force a second read.
_READ_SLACK = 64 << 10
_MAX_READ_FDS = 8


def _segment_name(base: int) -> str:
    return f"{base:0{_SEGMENT_DIGITS}d}{_SEGMENT_SUFFIX}"


def _list_bases(directory: Path) -> list[int]:
    """Base offsets of the segment files in `directory`, ascending."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise LogError(
            f"cannot list log directory {directory}: {e.strerror}; check it exists and is readable"
        ) from e
    bases = []
    for name in names:
        stem = name[: -len(_SEGMENT_SUFFIX)]
        if name.endswith(_SEGMENT_SUFFIX) and len(stem) == _SEGMENT_DIGITS and stem.isdigit():
            bases.append(int(stem))
    bases.sort()
    return bases


def _fsync_directory(directory: Path) -> None:
    # A new segment's directory entry must survive a crash too, or its records vanish with it.
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _SegmentReader:
    """Finds and opens segments for reading. Not thread-safe; the owner serialises use."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._bases: list[int] = []
        self._fds: OrderedDict[int, int] = OrderedDict()

    def locate(self, pos: int) -> tuple[int, int, int, int | None] | None:
        """The segment holding `pos`: (base, fd, size, next base or None if it may still grow).

        None if there are no segments yet. For the last known segment the size is read now
        (it may grow); for earlier ones it is exact, because the next base is base + size.
        """
        if not self._bases or pos < self._bases[0]:
            self._bases = _list_bases(self._dir)
            if not self._bases:
                return None
            if pos < self._bases[0]:
                raise LogError(
                    f"offset {pos} is before the first segment (base {self._bases[0]}) of {self._dir}; "
                    "read from a record offset returned by this log"
                )
        i = bisect.bisect_right(self._bases, pos) - 1
        base = self._bases[i]
        fd = self._fd(base)
        if i + 1 < len(self._bases):
            nxt = self._bases[i + 1]
            return base, fd, nxt - base, nxt
        return base, fd, os.fstat(fd).st_size, None

    def next_segment(self, base: int, size: int) -> int | None:
        """The base of the segment after the last known one (`base`, `size` just read), if it exists.

        An appender names the next segment after the old one's final size, so finding a file
        at exactly base + size proves the old segment is final at that size.
        """
        if size <= 0:
            return None
        nxt = base + size
        if os.path.exists(self._dir / _segment_name(nxt)):
            self._bases.append(nxt)
            return nxt
        return None

    def last(self) -> tuple[int, int] | None:
        """(base, size) of the last segment, following any rolls; None if there is none."""
        if not self._bases:
            self._bases = _list_bases(self._dir)
            if not self._bases:
                return None
        while True:
            base = self._bases[-1]
            size = os.fstat(self._fd(base)).st_size
            if self.next_segment(base, size) is None:
                return base, size

    def _fd(self, base: int) -> int:
        fd = self._fds.get(base)
        if fd is not None:
            self._fds.move_to_end(base)
            return fd
        path = self._dir / _segment_name(base)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            self._bases = []
            raise LogError(f"segment {path} disappeared while reading; was the log directory edited?") from e
        self._fds[base] = fd
        if len(self._fds) > _MAX_READ_FDS:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])
        self._bases = []


def _collect(reader: _SegmentReader, start: int, max_bytes: int) -> list[Record]:
    """The records at or after `start`: the body of `EmbeddedStream.read`."""
    out: list[Record] = []
    budget = max_bytes
    pos = start
    min_want = 0
    while True:
        loc = reader.locate(pos)
        if loc is None:
            return out
        base, fd, size, next_base = loc
        rel = pos - base
        if rel >= size:
            nxt = next_base if next_base is not None else reader.next_segment(base, size)
            if nxt is None:
                return out  # at (or past) the end of the log
            if rel == size:
                pos = nxt
            continue  # past the end of a rolled segment: locate `pos` again
        budget = max(budget, 0)
        want = min(size - rel, max(budget + (budget >> 2) + _READ_SLACK, min_want))
        buf = os.pread(fd, want, rel)
        n = len(buf)
        if n < want:
            # The file is shorter than expected: a repair cut the last segment, or a crash
            # without fsync lost the end of an earlier one. Either way, the tail ends here.
            size = rel + n
        origin = base + rel
        p = 0
        need = 0
        while True:
            if p + _HEADER_SIZE > n:
                need = _HEADER_SIZE
                break
            length, crc = _HEADER.unpack_from(buf, p)
            end = p + _HEADER_SIZE + length
            if end > n:
                need = _HEADER_SIZE + length
                break
            if out and length > budget:
                return out
            payload = buf[p + _HEADER_SIZE : end]
            if crc32c(payload) != crc:
                if next_base is None:
                    # Only trust the damage once a complete record follows it: until then the
                    # bad record may be a tail that repair_tail will cut.
                    if end + _HEADER_SIZE > n:
                        need = end + _HEADER_SIZE - p
                        break
                    (following,) = struct.unpack_from("<I", buf, end)
                    if end + _HEADER_SIZE + following > n:
                        need = end + _HEADER_SIZE + following - p
                        break
                reason = f"CRC mismatch at offset {origin + p} (record of {length} bytes)"
                out.append(Record(origin + p, b"", origin + end, reason))
            else:
                out.append(Record(origin + p, payload, origin + end))
            budget -= length
            p = end
            if p == n:
                break
        pos = origin + p
        min_want = 0
        if p == n and need == 0:
            continue
        if rel + p + need <= size:
            # The record is complete in the file, just not in this chunk.
            min_want = need
            continue
        if next_base is None:
            nxt = reader.next_segment(base, size)
            if nxt is None:
                return out  # an incomplete tail: a writer may be mid-write
            continue  # the segment was rolled meanwhile, so its tail is final: look again
        reason = (
            f"truncated record at offset {pos}: segment {_segment_name(base)} ends {size - rel - p} bytes "
            f"after it, the rest of the log continues at {next_base}"
        )
        out.append(Record(pos, b"", next_base, reason))
        budget -= next_base - pos
        pos = next_base
        if budget <= 0:
            return out


class EmbeddedStream:
    """A one-partition stream stored as segment files in `directory`.

    Many processes may append at once; readers never take locks. `segment_bytes` is the size
    after which appenders start a new segment; `fsync=False` trades durability for speed
    (tests, benchmarks).
    """

    def __init__(self, directory: str | Path, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LogError(f"cannot create log directory {self._dir}: {e.strerror}; check permissions") from e
        # Threads of one process share these fds; flock would not exclude them from each other.
        self._append_mutex = threading.Lock()
        self._read_mutex = threading.Lock()
        self._lock_fd: int | None = None
        self._seg_fd: int | None = None
        self._seg_base = 0
        self._reader = _SegmentReader(self._dir)
        self._marker = TailMarker(self._dir)
        self._closed = False

    @property
    def directory(self) -> Path:
        """The directory holding the segment files."""
        return self._dir

    @property
    def partitions(self) -> int:
        """Always 1."""
        return 1

    # ----------------------------------------------------------------------------- append

    def append(self, payloads: Sequence[bytes], partition: int = 0) -> list[int]:
        """Append `payloads` in order as one write; return their offsets once durable.

        Safe to call from several threads and processes at once: the records of one call are
        contiguous in the log.
        """
        _check_partition(partition)
        if not payloads:
            return []
        parts: list[bytes] = []
        sizes: list[int] = []
        for payload in payloads:
            length = len(payload)
            if length > _MAX_PAYLOAD:
                raise ValueError(f"a record holds at most {_MAX_PAYLOAD} bytes, not {length}")
            parts.append(_HEADER.pack(length, crc32c(payload)))
            parts.append(payload)
            sizes.append(_HEADER_SIZE + length)
        data = b"".join(parts)
        with self._exclusive():
            fd, base, start = self._append_segment()
            self._write_all(fd, data, start)
            self._durable(fd, base)
            try:
                self._marker.write(base, start + len(data))
            except OSError:
                log.exception("could not update the tail marker of %s", self._dir)
        offsets = []
        offset = base + start
        for size in sizes:
            offsets.append(offset)
            offset += size
        return offsets

    def _durable(self, fd: int, base: int) -> None:
        if self._fsync:
                try:
                    os.fdatasync(fd)
                except OSError as e:
                    # The records are written but maybe not durable; the caller must not
                    # assume either way, so say so.
                    raise LogError(
                        f"fdatasync of {self._dir / _segment_name(base)} failed: {e.strerror}; "
                        "the last append may or may not survive a crash; check the disk"
                    ) from e

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the append lock: this process's mutex, then the flock other processes honour."""
        with self._append_mutex:
            self._check_open()
            lock_fd = self._append_lock_fd()
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            except OSError as e:
                raise LogError(f"cannot lock {self._dir / 'append.lock'}: {e.strerror}") from e
            try:
                yield
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _append_lock_fd(self) -> int:
        if self._lock_fd is None:
            path = self._dir / "append.lock"
            try:
                self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise LogError(
                    f"cannot open {path}: {e.strerror}; check the data directory is writable"
                ) from e
        return self._lock_fd

    def _append_segment(self) -> tuple[int, int, int]:
        """(fd, base, size) of the segment to append to, its torn tail cut. Call under the append lock."""
        try:
            fd: int | None = None
            if self._seg_fd is not None:
                size = os.fstat(self._seg_fd).st_size
                # The exists() check keeps us off a segment that another process, configured
                # with a smaller segment_bytes, has already rolled past.
                if not (size > 0 and os.path.exists(self._dir / _segment_name(self._seg_base + size))):
                    fd, base = self._seg_fd, self._seg_base
            if fd is None:
                bases = _list_bases(self._dir)
                base = bases[-1] if bases else 0
                fd = self._open_for_append(base, create=not bases)
                self._use_segment(fd, base)
            # Cut a torn tail first: appended after, records would be unreadable (and a roll
            # would freeze the torn bytes into the middle of the log).
            size = self._heal(fd, base)
            if size >= self._segment_bytes:
                base += size
                fd = self._open_for_append(base, create=True)
                self._use_segment(fd, base)
                size = self._heal(fd, base)
        except OSError as e:
            raise LogError(f"cannot open a segment for appending in {self._dir}: {e.strerror}") from e
        return fd, base, size

    def _use_segment(self, fd: int, base: int) -> None:
        if self._seg_fd is not None and self._seg_fd != fd:
            os.close(self._seg_fd)
        self._seg_fd, self._seg_base = fd, base

    def _heal(self, fd: int, base: int) -> int:
        """Cut a torn tail off the segment at `base` (open as `fd`); its good size. Under the append lock."""
        size = os.fstat(fd).st_size
        return heal(self._dir, self._marker, self._dir / _segment_name(base), base, fd, size, _valid_prefix)

    def _open_for_append(self, base: int, create: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        fd = os.open(self._dir / _segment_name(base), flags, 0o644)
        if create and self._fsync:
            _fsync_directory(self._dir)
        return fd

    def _write_all(self, fd: int, data: bytes, start: int) -> None:
        view = memoryview(data)
        done = 0
        try:
            # One write in practice; the loop only covers short writes (huge batches, signals).
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError as e:
            # Cut what did land, so the log never holds half a batch the caller thinks failed.
            try:
                os.ftruncate(fd, start)
            except OSError:
                log.exception("could not cut a partial append at %d in %s", start, self._dir)
            hint = "free some disk space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
            raise LogError(f"append to {self._dir} failed: {e.strerror}; {hint} and retry") from e

    # ------------------------------------------------------------------------------- read

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        """Return the complete records at or after `start` (a record boundary or the end).

        Takes no file lock. An incomplete record at the end (a writer may be mid-write) is not
        returned. A record with a bad CRC that is followed by a complete record is returned
        with `corrupt` set and an empty payload. Returns about `max_bytes` of payload at most,
        but always at least one record if one is available.
        """
        _check_partition(partition)
        if start < 0:
            raise ValueError(f"start must be >= 0, not {start}")
        with self._read_mutex:
            self._check_open()
            try:
                return _collect(self._reader, start, max_bytes)
            except OSError as e:
                raise LogError(f"cannot read {self._dir}: {e.strerror}") from e

    def iter_records(self, start: int = 0) -> Iterator[Record]:
        """Yield every complete record from `start` to the end, corrupt ones included."""
        self._check_open()
        reader = _SegmentReader(self._dir)
        pos = start
        try:
            while True:
                try:
                    records = _collect(reader, pos, _ITER_CHUNK)
                except OSError as e:
                    raise LogError(f"cannot read {self._dir}: {e.strerror}") from e
                if not records:
                    return
                yield from records
                pos = records[-1].next
        finally:
            reader.close()

    def last_record(self) -> Record | None:
        """The last complete record, found by scanning only the newest non-empty segment."""
        self._check_open()
        for base in reversed(_list_bases(self._dir)):
            last = None
            for last in self.iter_records(base):  # noqa: B007 - we want the final one
                pass
            if last is not None:
                return last
        return None

    def iter_payloads(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, payload) of every record from `start` to the end: the fast replay path.

        A record's `next` is offset + 8 + len(payload). Raises LogError at a corrupt record
        rather than skipping it; use `iter_records` to see corrupt records and go past them.
        """
        self._check_open()
        reader = _SegmentReader(self._dir)
        unpack = _HEADER.unpack_from
        crc = crc32c
        pos = start
        try:
            while True:
                loc = reader.locate(pos)
                if loc is None:
                    return
                base, fd, size, next_base = loc
                rel = pos - base
                if rel >= size:
                    nxt = next_base if next_base is not None else reader.next_segment(base, size)
                    if nxt is None:
                        return
                    if rel == size:
                        pos = nxt
                    continue
                buf = os.pread(fd, min(size - rel, _ITER_CHUNK), rel)
                n = len(buf)
                origin = base + rel
                p = 0
                while p + 8 <= n:
                    length, checksum = unpack(buf, p)
                    end = p + 8 + length
                    if end > n:
                        break
                    payload = buf[p + 8 : end]
                    if crc(payload) != checksum:
                        break
                    yield origin + p, payload
                    p = end
                pos = origin + p
                if p:
                    continue  # the next chunk starts at the first unparsed record
                # A record bigger than a chunk, a tail, or damage: let the general path decide.
                records = _collect(reader, pos, 1)
                if not records:
                    return
                record = records[0]
                if record.corrupt is not None:
                    raise LogError(
                        f"{self._dir}: {record.corrupt}; replay stops here rather than skip it "
                        "(iter_records/read return it marked corrupt)"
                    )
                yield record.offset, record.payload
                pos = record.next
        except OSError as e:
            raise LogError(f"cannot read {self._dir}: {e.strerror}") from e
        finally:
            reader.close()

    def end(self, partition: int = 0) -> int:
        """The offset the next record gets if no one else appends first."""
        _check_partition(partition)
        with self._read_mutex:
            self._check_open()
            try:
                last = self._reader.last()
            except OSError as e:
                raise LogError(f"cannot read {self._dir}: {e.strerror}") from e
        return 0 if last is None else last[0] + last[1]

    # ----------------------------------------------------------------------------- repair

    def repair_tail(self) -> int:
        """Cut a torn tail off the last segment; return the number of bytes cut (0 if clean).

        A torn tail is a partial header, a payload running past the end of the file, or a
        record with a bad CRC at the end: whatever `read` would not return at the end. Every
        append does a quick version of this first (see `log/tail.py`); call this at start, or
        when a reader stays stuck at a frame that never completes.
        """
        with self._exclusive():
            bases = _list_bases(self._dir)
            if not bases:
                return 0
            path = self._dir / _segment_name(bases[-1])
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as e:
                raise LogError(f"cannot open {path} to check its tail: {e.strerror}") from e
            try:
                size = os.fstat(fd).st_size
                return size - heal(self._dir, self._marker, path, bases[-1], fd, size, _valid_prefix, thorough=True)
            except OSError as e:
                raise LogError(f"cannot repair the tail of {path}: {e.strerror}") from e
            finally:
                os.close(fd)

    # ------------------------------------------------------------------------------ close

    def close(self) -> None:
        """Close every file. Idempotent; any later call but `close` raises LogError."""
        with self._append_mutex, self._read_mutex:
            if self._closed:
                return
            self._closed = True
            for fd in (self._seg_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._seg_fd = self._lock_fd = None
            self._reader.close()
            self._marker.close()

    def __enter__(self) -> EmbeddedStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"the stream at {self._dir} is closed; open a new EmbeddedStream")

    def __repr__(self) -> str:
        return f"EmbeddedStream({str(self._dir)!r})"


def _check_partition(partition: int) -> None:
    if partition != 0:
        raise ValueError(f"the embedded log has one partition (0), not partition {partition}")


def _valid_prefix(fd: int, size: int) -> int:
    """Length of the segment prefix that `read` would return in full (the rest is a torn tail).

    Walks headers only; the CRC matters just for the final complete record, since a bad
    record followed by a complete one is reported as corrupt rather than cut.
    """
    p = 0
    last = -1  # start of the final complete record
    chunk_start = 0
    buf = b""
    while True:
        if p + _HEADER_SIZE > size:
            break
        if p + _HEADER_SIZE > chunk_start + len(buf):
            chunk_start = p
            buf = os.pread(fd, min(_ITER_CHUNK, size - p), p)
        (length,) = struct.unpack_from("<I", buf, p - chunk_start)
        end = p + _HEADER_SIZE + length
        if end > size:
            break
        last = p
        p = end
    if last >= 0:
        length, crc = _HEADER.unpack(os.pread(fd, _HEADER_SIZE, last))
        if crc32c(os.pread(fd, length, last + _HEADER_SIZE)) != crc:
            return last
    return p


class DirectoryLock:
    """An exclusive, non-blocking lock on a file, holding the owner's pid (the master lock).

    `what` names the lock in error messages, e.g. "the master lock of /data/easysched".
    The kernel drops the lock when the holder dies, so a crash never leaves it stale.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LogLockedError naming the holder's pid."""
        if self._fd is not None:
            raise LogError(f"{self.what} ({self.path}) is already held by this DirectoryLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise LogError(f"cannot open {self.path} for {self.what}: {e.strerror}; check permissions") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process (its pid is not written yet)"
            raise LogLockedError(
                f"{self.what} ({self.path}) is already held by {who} "
                "(another `easysched run` on this data dir?); stop that process first"
            ) from None
        except OSError as e:
            os.close(fd)
            raise LogError(f"cannot lock {self.path} for {self.what}: {e.strerror}") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Clear the pid first: after unlocking, the file belongs to the next holder.
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
