"""Positions in the streams that replay, verify and export need: where a stream starts, and
where the events stream holds the batch of a given command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from easysched_es.log.base import Record, Stream
from easysched_es.runtime.fold import records


def first_offset(stream: Stream, partition: int = 0) -> int:
    """The lowest offset still in the stream (above 0 once retention deleted old segments)."""
    own = getattr(stream, "first_offset", None)
    if callable(own):
        return int(own(partition))
    directory = getattr(stream, "directory", None)
    if isinstance(directory, Path):
        bases = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
        return bases[0] if bases else 0
    return 0


class _BatchHead(msgspec.Struct):
    offset: int


_head_decoder = msgspec.msgpack.Decoder(_BatchHead)


class EventsCursor:
    """Walks the events stream forward, decoding only each batch's command offset."""

    def __init__(self, events: Stream, partition: int = 0, start: int | None = None) -> None:
        self._events = events
        self._partition = partition
        begin = first_offset(events, partition) if start is None else start
        self._records: Iterator[Record] = records(events, partition, begin)
        self._pending: Record | None = None

    def after(self, offset: int) -> int:
        """The position of the first batch deciding a command after `offset` (the end if none yet).

        Calls must ask for non-decreasing offsets.
        """
        while True:
            record = self._pending if self._pending is not None else next(self._records, None)
            if record is None:
                return self._events.end(self._partition)
            self._pending = record
            if record.corrupt is None:
                try:
                    if _head_decoder.decode(record.payload).offset > offset:
                        return record.offset
                except msgspec.MsgspecError:
                    pass
            self._pending = None


def events_position(events: Stream, partition: int, after: int, hint: int | None = None) -> int:
    """The position in the events stream of the first batch deciding a command after offset `after`.

    `hint` (a snapshot's recorded events position) is checked and used when it is right.
    """
    if hint is not None and hint >= first_offset(events, partition):
        try:
            if _hint_ok(events, partition, hint, after):
                return hint
        except (ValueError, OSError):
            pass
    return EventsCursor(events, partition).after(after)


def _hint_ok(events: Stream, partition: int, hint: int, after: int) -> bool:
    if hint >= events.end(partition):
        return True  # nothing decided after the snapshot yet
    got = events.read(hint, partition, max_bytes=1)
    if not got or got[0].offset != hint or got[0].corrupt is not None:
        return False
    return _head_decoder.decode(got[0].payload).offset > after
