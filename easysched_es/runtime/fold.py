"""Feeding a commands stream through the pure fold: the one loop master, CLI and replay share.

The queries (status, timers, trace, replay, verify, wait) read a `LogSource`: an embedded data
directory (`DataDir`, one partition) or the Kafka topics (`runtime.kafka.master.KafkaLog`, one
State per partition). Both give the commands and events streams and a partition's snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from tqdm import tqdm

from easysched_es.core.events import Event
from easysched_es.core.state import State
from easysched_es.core.step import reject_record, step_record
from easysched_es.log.base import LogError, Record, Stream

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


class LogSource(Protocol):
    """Where queries fold from: the streams of a log and its partitions' snapshots."""

    @property
    def partitions(self) -> int:
        """How many partitions the commands stream has."""
        ...

    def commands(self) -> AbstractContextManager[Stream]:
        """Open the commands stream."""
        ...

    def events(self) -> AbstractContextManager[Stream]:
        """Open the events stream."""
        ...

    def load_snapshot(self, partition: int, until: int | None = None) -> State | None:
        """The newest good snapshot of `partition` covering at most command offset `until` (None: any)."""
        ...


def instance_partition(instance: str) -> int:
    """The partition of an instance id "<partition>-<offset>" (the offset of its StartWorkflow)."""
    head, sep, _ = instance.partition("-")
    if not sep or not head.isdigit():
        raise ValueError(f"{instance!r} is not an instance id (expected PARTITION-OFFSET, e.g. 0-42)")
    return int(head)


def records(stream: Stream, partition: int = 0, start: int = 0, end: int | None = None) -> Iterator[Record]:
    """Every record of a partition from `start` to `end` (default: its end as of each read)."""
    pos = start
    while (end is None or pos < end) and (batch := stream.read(pos, partition)):
        for record in batch:
            if end is not None and record.offset >= end:
                return
            yield record
        pos = batch[-1].next


def start_state(source: LogSource, partition: int = 0, until: int | None = None) -> State:
    """Where a fold of `partition` (up to `until`) starts: its newest usable snapshot, else empty."""
    if not 0 <= partition < source.partitions:
        raise LogError(f"the log has partitions 0..{source.partitions - 1}, not {partition}")
    state = source.load_snapshot(partition, until) or State(partition)
    state.partition = partition
    return state


def load_state(
    source: LogSource,
    *,
    partition: int = 0,
    until: int | None = None,
    sink: Sink | None = None,
    progress: bool = False,
) -> State:
    """The state of `partition` after every command up to offset `until` (default: all): snapshot + tail."""
    state = start_state(source, partition, until)
    with source.commands() as commands:
        fold_stream(commands, state, until=until, partition=partition, sink=sink, progress=progress)
    return state


def load_states(source: LogSource, *, progress: bool = False) -> list[State]:
    """The state of every partition, in partition order (the embedded log has one)."""
    with source.commands() as commands:
        states = []
        for partition in range(commands.partitions):
            state = start_state(source, partition)
            fold_stream(commands, state, partition=partition, progress=progress)
            states.append(state)
    return states
