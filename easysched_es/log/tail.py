"""Healing the tail of an embedded stream: a torn frame is cut under the append lock, never appended after.

A crashed appender, a full disk or a power loss can leave a partial record (or garbage) at
the end of the last segment. Readers stop there (a writer may still be mid-write), so
anything appended after it would be acknowledged yet unreadable. So every appender, holding
the append lock (no one is writing then), first checks that the segment ends where the last
intact append ended, and cuts whatever follows.

The check is cheap: `tail` in the stream directory holds (segment base, end) of the last
intact append, written under the same lock after the append is durable. When it matches the
file's size the tail is good (an fstat and a 20-byte read); otherwise the records after the
marked end are checked one by one (CRC included) and the first bad one is cut with all that
follows. Without a usable marker (an old directory) the whole segment is walked as at start.
A cut is logged, appended to `repairs.log` (one JSON line) and the cut bytes kept in
`torn-<offset>.bin` (up to 1 MiB), so nothing disappears without a trace.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from easysched_es.log.crc import crc32c

log = logging.getLogger(__name__)

_MARKER = struct.Struct("<QQI")
_HEADER = struct.Struct("<II")
_KEEP_BYTES = 1 << 20


class TailMarker:
    """The (segment base, end) of the last intact append, in `<dir>/tail`. Use under the append lock."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "tail"
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def read(self) -> tuple[int, int] | None:
        """The marked (base, end), or None when absent or damaged."""
        raw = os.pread(self._open(), _MARKER.size, 0)
        if len(raw) != _MARKER.size:
            return None
        base, end, crc = _MARKER.unpack(raw)
        return (base, end) if crc32c(raw[:16]) == crc else None

    def write(self, base: int, end: int) -> None:
        """Mark (base, end). Not fsynced: a stale marker only makes the next check slower."""
        head = struct.pack("<QQ", base, end)
        os.pwrite(self._open(), head + struct.pack("<I", crc32c(head)), 0)

    def close(self) -> None:
        """Close the marker file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def intact_end(fd: int, start: int, size: int) -> int:
    """Where the run of intact records (complete, CRC good) starting at `start` ends."""
    pos = start
    while pos + _HEADER.size <= size:
        length, crc = _HEADER.unpack(os.pread(fd, _HEADER.size, pos))
        end = pos + _HEADER.size + length
        if end > size:
            break
        payload = os.pread(fd, length, pos + _HEADER.size)
        if len(payload) != length or crc32c(payload) != crc:
            break
        pos = end
    return pos


def heal(
    directory: Path,
    marker: TailMarker,
    segment: Path,
    base: int,
    write_fd: int,
    size: int,
    whole_segment: Callable[[int, int], int],
    *,
    thorough: bool = False,
) -> int:
    """Cut a torn tail off the last segment (`write_fd`, `size` bytes); return its good size.

    `whole_segment(fd, size)` gives the good prefix when the marker cannot be used.
    `thorough` (at start) also walks the segment when the marker matches, which catches a
    last record damaged in place. Call under the append lock.
    """
    marked = marker.read()
    if marked == (base, size) and not thorough:
        return size
    read_fd = os.open(segment, os.O_RDONLY | os.O_CLOEXEC)
    try:
        good = size
        if marked is not None and marked[0] == base and marked[1] <= size:
            good = intact_end(read_fd, marked[1], size)
        if thorough or marked is None or marked[0] != base or marked[1] > size:
            good = min(good, whole_segment(read_fd, size))
        if good < size:
            _record_cut(directory, segment, read_fd, base, good, size)
            os.ftruncate(write_fd, good)
            os.fsync(write_fd)
    finally:
        os.close(read_fd)
    marker.write(base, good)
    return good


def _record_cut(directory: Path, segment: Path, fd: int, base: int, good: int, size: int) -> None:
    offset = base + good
    kept = directory / f"torn-{offset}.bin"
    try:
        kept.write_bytes(os.pread(fd, min(size - good, _KEEP_BYTES), good))
        entry = {"at": int(time.time() * 1000), "pid": os.getpid(), "segment": segment.name, "offset": offset,
                 "bytes": size - good, "kept": kept.name}
        with open(directory / "repairs.log", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        log.exception("could not record the torn tail cut at offset %d in %s", offset, directory)
    log.warning(
        "cut a torn tail of %d bytes at offset %d of %s before appending (the records there were never "
        "completely written; the bytes are kept in %s)", size - good, offset, segment, kept,
    )


def repairs(directory: Path) -> list[dict[str, object]]:
    """The cuts recorded in `<dir>/repairs.log`, oldest first."""
    try:
        lines = (directory / "repairs.log").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line torn by a crash
    return out
