"""Replay to any point, fast: start from the nearest kept snapshot at or before it, fold the gap.

A point is a command offset (`until`) or a wall time (`at`). "The state as of time T" is the
state after every command up to the last one that keeps the state's clock (`State.now`, the
largest `at` applied so far, which never goes back) at or before T; so `--at T` is exactly
`--until` the offset it resolves to, and a snapshot whose clock is at or before T is a valid
start for it.

When retention has deleted the start of the log, a fold cannot begin at offset 0: it begins at
the oldest kept snapshot, says so, and a point before that snapshot is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from easysched_es.core.state import State
from easysched_es.core.step import MAX_TIME
from easysched_es.debug.positions import EventsCursor, first_offset
from easysched_es.log.base import LogError, Stream
from easysched_es.runtime.fold import LogSource, fold_through, records
from easysched_es.runtime.gc_pause import gc_paused
from easysched_es.runtime.snapshot_index import SnapshotMeta
from easysched_es.runtime.snapshots import SnapshotStore


@dataclass
class Start:
    """Where a fold begins: the state (a snapshot's, or empty) and how it was chosen."""

    state: State
    snapshot: int | None
    note: str = ""
    # The snapshot's record of where the events of the commands after it begin, if known.
    events_position: int | None = None


class _Stamp(msgspec.Struct):
    """Only the time of a command record (the rest is skipped by the decoder)."""

    at: int = 0


_stamp_decoder = msgspec.msgpack.Decoder(_Stamp)


def _store(source: LogSource, partition: int) -> SnapshotStore | None:
    get = getattr(source, "snapshot_store", None)
    return get() if callable(get) and partition == 0 else None


def start_for(
    source: LogSource, stream: Stream, partition: int = 0, *, until: int | None = None, at: int | None = None
) -> Start:
    """The state a fold to `until` / `at` starts from: the newest usable snapshot at or before it."""
    if not 0 <= partition < source.partitions:
        raise LogError(f"the log has partitions 0..{source.partitions - 1}, not {partition}")
    low = first_offset(stream, partition)
    store = _store(source, partition)
    state: State | None = None
    events_at = None
    if store is not None:
        found = store.load_with_meta(until=until, at=at)
        if found is not None:
            state, events_at = found[0], found[1].events_position
    else:
        state = source.load_snapshot(partition, until)
        if state is not None and at is not None and state.now > at:
            state = None
    if state is not None and state.position >= low:
        state.partition = partition
        note = f"started from the snapshot at offset {state.last_offset}"
        if low > 0:
            note += f" (retention deleted the log before offset {low})"
        return Start(state, state.last_offset, note, events_at)
    if low == 0:
        return Start(State(partition), None, "folded from the start of the log")
    oldest = _oldest_usable(store, low)
    where = f"offset {until}" if until is not None else f"time {at}" if at is not None else "that point"
    if oldest is None:
        raise LogError(
            f"retention deleted the log before offset {low} and no kept snapshot covers it: "
            f"{where} cannot be replayed (keep older snapshots, or replay a copy made before retention)"
        )
    raise LogError(
        f"{where} is before the oldest kept snapshot (offset {oldest.offset}); retention deleted the log "
        f"before offset {low}, so the earliest point that can be replayed is offset {oldest.offset}"
    )


def _oldest_usable(store: SnapshotStore | None, low: int) -> SnapshotMeta | None:
    if store is None:
        return None
    for meta in store.metas():
        if meta.position < 0 or meta.position >= low:
            return meta
    return None


def resolve_time(stream: Stream, start: State, at: int, partition: int = 0) -> int:
    """The offset of the last command that keeps the state's clock at or before `at` (from `start`).

    -1 (or the start's own offset) when even the first command after the start is later.
    """
    now = start.now
    last = start.last_offset
    for record in records(stream, partition, start.position):
        if record.corrupt is None:
            try:
                stamp = _stamp_decoder.decode(record.payload).at
            except msgspec.MsgspecError:
                stamp = now  # a rejected record does not move the clock
            if 0 <= stamp <= MAX_TIME and stamp > now:
                if stamp > at:
                    return last
                now = stamp
        last = record.offset
    return last


@dataclass
class Replayed:
    """A state as of a point, with what the replay did to get there."""

    state: State
    until: int
    snapshot: int | None
    folded: int
    note: str


def replay(
    source: LogSource, partition: int = 0, *, until: int | None = None, at: int | None = None, progress: bool = False
) -> Replayed:
    """The state of `partition` after the commands up to offset `until` or time `at` (default: all)."""
    with source.commands() as stream, gc_paused():
        begin = start_for(source, stream, partition, until=until, at=at)
        state = begin.state
        target = until
        if at is not None:
            resolved = resolve_time(stream, state, at, partition)
            target = resolved if target is None else min(target, resolved)
        folded = 0
        if target is None or target > state.last_offset:
            folded = fold_through(stream, state, until=target, partition=partition, progress=progress)
    return Replayed(state, state.last_offset if target is None else target, begin.snapshot, folded, begin.note)


def build_index(source: LogSource, every: int, partition: int = 0) -> list[int]:
    """Fold the log once and write a snapshot every `every` commands (the index's rule thins them).

    For a log written before the index existed, or whose master snapshots rarely. Starts from
    the newest kept snapshot; returns the offsets written.
    """
    store = _store(source, partition)
    if store is None:
        raise LogError("this log keeps no snapshot files (the Kafka snapshot topic is compacted to the newest)")
    if every <= 0:
        raise LogError(f"--every must be a positive number of commands, not {every}")
    written: list[int] = []
    with source.commands() as stream, source.events() as events, gc_paused():
        state = start_for(source, stream, partition).state
        cursor = EventsCursor(events, partition)
        while fold_through(stream, state, partition=partition, max_records=every) == every:
            store.save(state, events_position=cursor.after(state.last_offset))
            written.append(state.last_offset)
    return written
