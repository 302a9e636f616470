"""Feeding a commands stream through the pure fold: the one loop master, CLI and replay share.

The queries (status, timers, trace, replay, verify, wait) read a `LogSource`: an embedded data
directory (`DataDir`, one partition) or the Kafka topics (`runtime.kafka.master.KafkaLog`, one
State per partition). Both give the commands and events streams and a partition's snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from easysched_es.core.codec import decode_command, decode_snapshot, encode
from easysched_es.core.events import Event
from easysched_es.core.state import State
from easysched_es.core.step import CommandFailed, Skip, reject_record, skip_target, step_record
from easysched_es.log.base import LogError, Record, Stream
from easysched_es.runtime.verdict import instance_partition as instance_partition  # its home is light to import

if TYPE_CHECKING:
    from tqdm import tqdm

# Logs shorter than this fold in well under a second: no bar.
PROGRESS_MIN_BYTES = 16 << 20

# Called with the record, its events and the command's type tag, after each step.
Sink = Callable[[Record, list[Event], str], None]


Skips = dict[int, Skip]


class PartitionHalted(LogError):
    """Applying a command raised (a bug) and no `skip` of it is in the log: the partition stops there."""

    def __init__(self, partition: int, failure: CommandFailed, after: int = 0) -> None:
        super().__init__(
            f"partition {partition} is stopped at offset {failure.offset}: {failure}. This is a bug in easysched "
            f"(please report it with `easysched export`); to go on without that command, append "
            f"`easysched skip {failure.offset}{f' --partition {partition}' if partition else ''} --reason '...'`"
        )
        # `after`: the position of the record after the failed one (where a skip may follow).
        self.partition, self.failure, self.after = partition, failure, after


class SkipFound(LogError):
    """The fold met a failing command that a later `skip` passes over: fold again from a clean state."""

    def __init__(self, offset: int, skip: Skip) -> None:
        super().__init__(
            f"the command at offset {offset} is passed over by the skip at offset {skip.skip_offset}, "
            "and this reader cannot fold again past it; use `easysched status` or `replay`"
        )
        self.offset, self.skip = offset, skip


def find_skip(stream: Stream, partition: int, start: int, target: int) -> tuple[int, str] | None:
    """(offset, reason) of the first valid `skip` of `target` at or after `start`, or None (a scan: rare path)."""
    return scan_for_skip(stream, partition, start, target)[0]


def scan_for_skip(stream: Stream, partition: int, start: int, target: int) -> tuple[tuple[int, str] | None, int]:
    """`find_skip`, plus the position where the scan ended (to resume it there later)."""
    pos = start
    for record in records(stream, partition, start):
        pos = record.next
        if record.corrupt is not None or b"skip" not in record.payload:
            continue
        try:
            command = decode_command(record.payload)
        except msgspec.DecodeError:
            continue
        if skip_target(command) == target:
            return (record.offset, str(getattr(command, "reason", ""))), pos
    return None, pos


def fold_stream(
    stream: Stream,
    state: State,
    *,
    until: int | None = None,
    partition: int = 0,
    sink: Sink | None = None,
    max_records: int | None = None,
    progress: bool = False,
    skips: Skips | None = None,
) -> int:
    """Apply the records after `state.position` (up to offset `until`) to `state`.

    Returns how many records were applied. A corrupt or undecodable record is recorded as
    rejected and the fold goes on. `progress` shows a bar on a terminal for a long log.
    A command whose application raises ends the fold: with SkipFound when a later `skip`
    passes over it (the state is spoilt: fold again from a clean one with that skip in
    `skips`, see `with_skips`), else with PartitionHalted.
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
                try:
                    _, events, tag = step_record(
                        state, record.payload, record.offset, skips.get(record.offset) if skips else None
                    )
                except CommandFailed as failure:
                    if bar is not None:
                        bar.close()
                    found = find_skip(stream, partition, record.next, record.offset)
                    if found is None:
                        raise PartitionHalted(partition, failure, record.next) from failure
                    raise SkipFound(record.offset, Skip(found[0], found[1], failure.error)) from failure
            state.position = record.next
            applied += 1
            if sink is not None:
                sink(record, events, tag)


def with_skips(fold: Callable[[Skips], State]) -> State:
    """Run `fold(skips)` (a fold from a clean start) again with each skip it finds, until it ends.

    Wrap a sink of `fold` in `once`, so that a refold does not pass it the same records again.
    """
    skips: Skips = {}
    while True:
        try:
            return fold(skips)
        except SkipFound as found:
            skips[found.offset] = found.skip


def fold_through(stream: Stream, state: State, *, sink: Sink | None = None, **options: Any) -> int:
    """`fold_stream` that goes on past skipped commands, refolding `state` in place from where it began.

    Keeps an encoded copy of the starting state (for one-off readers: trace, replay, verify;
    `load_state` and the master refold from their snapshots instead).
    """
    origin = encode(state.snapshot())
    sink = once(sink)
    skips: Skips = {}
    while True:
        try:
            return fold_stream(stream, state, sink=sink, skips=skips, **options)
        except SkipFound as found:
            skips[found.offset] = found.skip
            fresh = State.restore(decode_snapshot(origin))
            for name in State.__slots__:
                setattr(state, name, getattr(fresh, name))


def once(sink: Sink | None) -> Sink | None:
    """`sink`, called at most once per offset (a refold by `with_skips` passes records again)."""
    if sink is None:
        return None
    seen = [-1]

    def wrapped(record: Record, events: list[Event], tag: str) -> None:
        if record.offset > seen[0]:
            seen[0] = record.offset
            sink(record, events, tag)

    return wrapped


def _progress_bar(stream: Stream, start: int, partition: int) -> tqdm[Any] | None:
    total = stream.end(partition) - start
    if total < PROGRESS_MIN_BYTES:
        return None
    from tqdm import tqdm  # here, not at the top: a CLI call on a small log never pays its import

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
    sink = once(sink)

    def fold(skips: Skips) -> State:
        state = start_state(source, partition, until)
        with source.commands() as commands:
            fold_stream(commands, state, until=until, partition=partition, sink=sink, progress=progress, skips=skips)
        return state

    return with_skips(fold)


def load_states(source: LogSource, *, progress: bool = False) -> list[State]:
    """The state of every partition, in partition order (the embedded log has one)."""
    prefetch = getattr(source, "prefetch", None)
    if callable(prefetch):  # a log that can fetch every partition's snapshot and tail side by side
        prefetch()
    with source.commands() as commands:
        states = []
        for partition in range(commands.partitions):

            def fold(skips: Skips, partition: int = partition) -> State:
                state = start_state(source, partition)
                fold_stream(commands, state, partition=partition, progress=progress, skips=skips)
                return state

            states.append(with_skips(fold))
    return states
