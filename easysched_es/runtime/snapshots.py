"""Snapshots of the master state beside the embedded log: an optimisation, never the truth.

A snapshot file holds the msgpack state and a CRC; it is written to a temporary name,
fsynced and renamed, so a crash leaves either the old or the new file. A snapshot that does
not verify is skipped with a warning and an older one (or the empty state) is used: the
log alone gives the same state.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import crc32c
import msgspec

from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import State

log = logging.getLogger(__name__)
_HEADER = struct.Struct("<II")
KEEP = 2


class SnapshotStore:
    """Snapshot files `<offset>.snap` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.directory.glob("*.snap"):
            try:
                found.append((int(p.stem), p))
            except ValueError:
                continue
        return sorted(found)

    def save(self, state: State) -> Path:
        """Write a snapshot covering every command up to `state.last_offset`."""
        payload = encode(state.snapshot())
        path = self.directory / f"{state.last_offset:020d}.snap"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(len(payload), crc32c.crc32c(payload)))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for _, old in self._files()[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def load(self, until: int | None = None) -> State | None:
        """The newest good snapshot covering at most offset `until` (None: any), or None."""
        for offset, path in reversed(self._files()):
            if until is not None and offset > until:
                continue
            try:
                data = path.read_bytes()
                length, crc = _HEADER.unpack_from(data)
                payload = data[_HEADER.size : _HEADER.size + length]
                if len(payload) != length or crc32c.crc32c(payload) != crc:
                    raise ValueError("CRC mismatch or short file")
                return State.restore(decode_snapshot(payload))
            except (OSError, ValueError, struct.error, msgspec.MsgspecError) as exc:
                log.warning("snapshot %s is unusable (%s); trying an older one", path, exc)
        return None
