"""Feeding a commands stream through the pure fold: the one loop master, CLI and replay share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from easysched_es.core.events import Event
from easysched_es.core.state import State
from easysched_es.core.step import reject_record, step_record
from easysched_es.log.base import Record, Stream
from easysched_es.runtime.datadir import DataDir
from easysched_es.runtime.snapshots import SnapshotStore

# Logs shorter than this fold in well under a second: no bar.
PROGRESS_MIN_BYTES = 16 << 20

# Called with the record, its events and the command's type tag, after each step.
Sink = Callable[[Record, list[Event], str], None]


def fold_stream(
    stream: Stream,
    state: State,
    *,
    until: int | None = None,
    partition: int = 0,
    sink: Sink | None = None,
    max_records: int | None = None,
    progress: bool = False,
) -> int:
    """Apply the records after `state.position` (up to offset `until`) to `state`.

    Returns how many records were applied. A corrupt or undecodable record is recorded as
    rejected and the fold goes on. `progress` shows a bar on a terminal for a long log.
    """
    applied = 0
    bar = _progress_bar(stream, state.position, partition) if progress else None
    while True:
        records = stream.read(state.position, partition)
        if bar is not None:
            bar.update(records[-1].next - state.position if records else 0)
        if not records:
            if bar is not None:
                bar.close()
            return applied
        for record in records:
            if (until is not None and record.offset > until) or (max_records is not None and applied >= max_records):
                return applied
            if record.corrupt is not None:
                _, events, tag = reject_record(state, record.offset, f"corrupt record: {record.corrupt}")
            else:
                _, events, tag = step_record(state, record.payload, record.offset)
            state.position = record.next
            applied += 1
            if sink is not None:
                sink(record, events, tag)


def _progress_bar(stream: Stream, start: int, partition: int) -> tqdm[Any] | None:
    total = stream.end(partition) - start
    if total < PROGRESS_MIN_BYTES:
        return None
    # disable=None: shown only when stderr is a terminal, never in pipes or logs.
    return tqdm(total=total, unit="B", unit_scale=True, desc="folding the log", disable=None, leave=False)


def load_state(
    data: DataDir, *, until: int | None = None, sink: Sink | None = None, progress: bool = False
) -> State:
    """The state after every command up to offset `until` (default: all): newest snapshot + tail."""
    state = SnapshotStore(data.snapshots).load(until) or State()
    with data.commands() as commands:
        fold_stream(commands, state, until=until, sink=sink, progress=progress)
    return state
