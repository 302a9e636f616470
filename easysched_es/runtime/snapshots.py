"""Snapshots of the master state beside the embedded log: an optimisation, never the truth.

A snapshot file holds the msgpack state and a CRC; it is written to a temporary name,
fsynced and renamed, so a crash leaves either the old or the new file. A snapshot that does
not verify is skipped with a warning and an older one (or the empty state) is used: the
log alone gives the same state.

Which snapshots are kept is the sparse index's rule (`snapshot_index.thin`: many recent, few
old, bounded gaps); each has a small `<offset>.meta` sidecar so that a replay to an offset or
a time picks its starting snapshot without decoding any.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import msgspec

from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import State
from easysched_es.log.crc import crc32c
from easysched_es.runtime.gc_pause import gc_paused
from easysched_es.runtime.snapshot_index import Policy, SnapshotMeta, nearest, thin

log = logging.getLogger(__name__)
_HEADER = struct.Struct("<II")
_meta_decoder = msgspec.json.Decoder(SnapshotMeta)


class SnapshotError(ValueError):
    """A snapshot file is unusable (short, CRC mismatch, does not decode)."""


class SnapshotStore:
    """Snapshot files `<offset>.snap` (and `<offset>.meta`) in one directory."""

    def __init__(self, directory: Path, policy: Policy | None = None) -> None:
        # Not created here: reading commands must not create directories.
        self.directory = directory
        self.policy = policy or Policy()

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        try:
            paths = list(self.directory.glob("*.snap"))
        except OSError:
            return []
        for p in paths:
            try:
                found.append((int(p.stem), p))
            except ValueError:
                continue
        return sorted(found)

    def path(self, offset: int) -> Path:
        """The file of the snapshot covering offset `offset`."""
        return self.directory / f"{offset:020d}.snap"

    def save(self, state: State, events_position: int | None = None) -> Path:
        """Write a snapshot covering every command up to `state.last_offset`, then thin the index.

        `events_position` is where the events stream holds the batch of the first command after
        the snapshot (the events stream's end, for a master that has written all its batches).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = encode(state.snapshot())
        path = self.path(state.last_offset)
        meta = SnapshotMeta(
            offset=state.last_offset,
            position=state.position,
            now=state.now,
            events_position=events_position,
            bytes=len(payload),
            instances=len(state.instances),
        )
        _write_atomic(path.with_suffix(".meta"), msgspec.json.encode(meta))
        _write_atomic(path, _HEADER.pack(len(payload), crc32c(payload)) + payload)
        self.prune()
        return path

    def prune(self) -> list[int]:
        """Delete the snapshots the index's spacing rule no longer keeps; return their offsets."""
        files = self._files()
        keep = thin([offset for offset, _ in files], self.policy)
        dropped = []
        for offset, path in files:
            if offset not in keep:
                path.unlink(missing_ok=True)
                path.with_suffix(".meta").unlink(missing_ok=True)
                dropped.append(offset)
        return dropped

    def metas(self) -> list[SnapshotMeta]:
        """What each snapshot covers, oldest first (from the sidecars; no snapshot is decoded)."""
        out = []
        for offset, path in self._files():
            try:
                meta = _meta_decoder.decode(path.with_suffix(".meta").read_bytes())
                if meta.offset != offset:
                    raise msgspec.ValidationError("offset does not match the file name")
            except (OSError, msgspec.MsgspecError):
                meta = SnapshotMeta(offset=offset, position=-1)
            out.append(meta)
        return out

    def read_payload(self, offset: int) -> bytes:
        """The verified msgpack payload of one snapshot (SnapshotError if unusable)."""
        path = self.path(offset)
        try:
            data = path.read_bytes()
            length, crc = _HEADER.unpack_from(data)
        except (OSError, struct.error) as exc:
            raise SnapshotError(f"snapshot {path} is unreadable: {exc}") from exc
        payload = data[_HEADER.size : _HEADER.size + length]
        if len(payload) != length or crc32c(payload) != crc:
            raise SnapshotError(f"snapshot {path}: CRC mismatch or short file")
        return payload

    def restore(self, offset: int) -> State:
        """Decode one snapshot into a state (SnapshotError if unusable)."""
        payload = self.read_payload(offset)
        try:
            with gc_paused():
                return State.restore(decode_snapshot(payload))
        except msgspec.MsgspecError as exc:
            raise SnapshotError(f"snapshot {self.path(offset)} does not decode: {exc}") from exc

    def load(self, until: int | None = None, at: int | None = None) -> State | None:
        """The newest good snapshot covering at most offset `until` and time `at` (None: any), or None."""
        found = self.load_with_meta(until, at)
        return None if found is None else found[0]

    def load_with_meta(self, until: int | None = None, at: int | None = None) -> tuple[State, SnapshotMeta] | None:
        """`load`, with the sidecar of the snapshot used."""
        for meta in nearest(self.metas(), until=until, at=at):
            try:
                state = self.restore(meta.offset)
            except SnapshotError as exc:
                log.warning("snapshot unusable: %s; trying an older one", exc)
                continue
            if at is not None and state.now > at:
                continue  # no sidecar said its time: too late for `at`
            return state, meta
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
