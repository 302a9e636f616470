"""The log interface every adapter (embedded file log, Kafka) implements.

A *stream* is one named, partitioned, append-only sequence of opaque byte records
(`commands`, `events`, `snapshots`). Offsets are integers that grow strictly within a
partition but need not be contiguous: the embedded log uses byte positions, Kafka leaves
gaps for transaction markers. A reader resumes from `Record.next`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec


class LogError(Exception):
    """A log adapter failed; the message says what to do about it."""


class LogLockedError(LogError):
    """Another process holds a lock that must be exclusive (for example the master lock)."""


class Record(msgspec.Struct, frozen=True):
    """One record read back from a stream partition.

    `corrupt` is None for a good record; otherwise it says why the record cannot be trusted
    (for example a CRC mismatch in the middle of a segment). A corrupt record still has an
    offset, so the master can record it as rejected and go on.
    """

    offset: int
    payload: bytes
    next: int
    corrupt: str | None = None


class Stream(Protocol):
    """One stream of a log. Every adapter passes `tests/log/contract.py`."""

    @property
    def partitions(self) -> int:
        """How many partitions the stream has (the embedded log has 1)."""
        ...

    def append(self, payloads: Sequence[bytes], partition: int = 0) -> list[int]:
        """Append records in order; return their offsets once they are durable."""
        ...

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        """Return the complete records at or after `start` available now (maybe none).

        Never blocks and never waits for writers; a record still being written is not
        returned until it is complete.
        """
        ...

    def end(self, partition: int = 0) -> int:
        """The offset the next appended record will get (or after which it will land)."""
        ...

    def close(self) -> None:
        """Release files, sockets and locks."""
        ...
