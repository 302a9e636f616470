"""Walk the log as far as one instance is concerned: fold where it can be touched, skip where it cannot.

The fold starts at the nearest snapshot before the instance's start (its id names that offset).
Once the instance is final, with no task whose process may still exist and no delay-queue
entry, only a command that names it can touch it again (a late report, a rerun): the walk
stops folding and scans ahead decoding only each record's `instance` field. When it finds such
a command it rebuilds the exact state just before it from the nearest snapshot and folds on.
So the cost is the instance's active life plus a light scan, not a fold of the whole tail.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from easysched_es.core.codec import decode_command
from easysched_es.core.commands import Command
from easysched_es.core.events import Event
from easysched_es.core.state import WF_FINAL, State, active
from easysched_es.debug.replay import start_for
from easysched_es.log.base import Record, Stream
from easysched_es.runtime.fold import LogSource, Skips, fold_stream, once, records, with_skips

# Called after each folded record with the state (after it), the record, its events, its tag and
# the state's clock before it.
WalkSink = Callable[[State, Record, list[Event], str, int], None]


class _Named(msgspec.Struct):
    instance: str = ""


_named_decoder = msgspec.msgpack.Decoder(_Named)


def command_of(record: Record) -> Command | None:
    """The command a folded record holds, or None for a corrupt or undecodable one."""
    if record.corrupt is not None:
        return None
    try:
        return decode_command(record.payload)
    except msgspec.MsgspecError:
        return None


def start_offset(instance: str) -> int:
    """The offset of the instance's StartWorkflow (the number after the dash of its id)."""
    tail = instance.partition("-")[2]
    return int(tail) if tail.isdigit() else 0


def settled(state: State, instance: str) -> bool:
    """Nothing but a command naming the instance can change it or produce an event about it."""
    inst = state.instances.get(instance)
    if inst is None or inst.state not in WF_FINAL:
        return False
    if any(active(ti) for ti in inst.tasks.values()):
        return False
    return not any(state.queue.pending_for(instance, name) for name in ("", *inst.tasks))


def _next_naming(stream: Stream, partition: int, position: int, instance: str) -> int | None:
    for record in records(stream, partition, position):
        if record.corrupt is not None:
            continue
        try:
            if _named_decoder.decode(record.payload).instance == instance:
                return record.offset
        except msgspec.MsgspecError:
            continue
    return None


class _Settled(Exception):
    """Raised from the sink to end a fold once the instance is settled (the state is consistent then)."""


def walk_instance(source: LogSource, stream: Stream, partition: int, instance: str, sink: WalkSink) -> State:
    """Feed `sink` every record that can touch `instance`, folded on the exact state; returns the last state.

    A command that raises and is skipped later (`easysched skip`) restarts the walk with that
    skip known; the sink sees each record once.
    """
    current: list[State] = []

    def step_sink(record: Record, events: list[Event], tag: str) -> None:
        state = current[0]
        sink(state, record, events, tag, clock[0])
        clock[0] = state.now
        # Only an event about the instance can settle it: check then, not after every record.
        if any(getattr(ev, "instance", None) == instance for ev in events) and settled(state, instance):
            raise _Settled

    once_sink = once(step_sink)
    clock = [0]

    def walk(skips: Skips) -> State:
        state = start_for(source, stream, partition, until=start_offset(instance) - 1).state
        current[:] = [state]
        clock[0] = state.now
        while True:
            try:
                fold_stream(stream, state, partition=partition, sink=once_sink, skips=skips)
                return state  # the log ended first
            except _Settled:
                pass
            found = _next_naming(stream, partition, state.position, instance)
            if found is None:
                return state
            state = start_for(source, stream, partition, until=found - 1).state
            fold_stream(stream, state, until=found - 1, partition=partition, skips=skips)
            current[:] = [state]
            clock[0] = state.now

    return with_skips(walk)
