"""Trace: every command and event that touched one instance (or one of its tasks), in log order.

The trace is computed by folding the commands log: the fold is deterministic, so this is what
the master decided (`verify` checks the recorded events agree), and it also covers commands
the master has not processed yet. Only the instance's partition (the number before the dash
of its id) is folded, and only from the nearest snapshot before the instance's start (its id
names the offset of its StartWorkflow): nothing earlier can touch an instance that did not
exist yet, except commands naming its id by guess, which were rejected as unknown then.
Once it is settled, the rest of the log is scanned, not folded (`debug.walk`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from easysched_es.core.commands import StartWorkflow
from easysched_es.core.events import Event
from easysched_es.core.state import State
from easysched_es.debug.views import iso
from easysched_es.debug.walk import command_of, walk_instance
from easysched_es.log.base import Record
from easysched_es.runtime.fold import LogSource, instance_partition
from easysched_es.runtime.gc_pause import gc_paused


def _touches(obj: object, instance: str, task: str | None) -> bool:
    if getattr(obj, "instance", None) != instance:
        return False
    if task is None:
        return True
    named = getattr(obj, "task", None)
    return named is None or named == "" or named == task


def trace(source: LogSource, instance: str, task: str | None = None) -> list[dict[str, Any]]:
    """The trace entries: commands and events, each with offset (in the instance's partition), time and type."""
    return trace_with_state(source, instance, task)[0]


def trace_with_state(
    source: LogSource, instance: str, task: str | None = None
) -> tuple[list[dict[str, Any]], State | None]:
    """The trace entries and the partition's state where the walk ended (None for an impossible id).

    The walk ends at the end of the log, or earlier once nothing but a command naming the
    instance could touch it and none follows (see `debug.walk`): the instance's part of that
    state is the same as at the end of the log.
    """
    entries: list[dict[str, Any]] = []
    try:
        partition = instance_partition(instance)
    except ValueError:
        return entries, None
    if partition >= source.partitions:
        return entries, None

    def sink(state: State, record: Record, events: list[Event], tag: str, clock: int) -> None:
        mine = [ev for ev in events if _touches(ev, instance, task)]
        command = command_of(record)
        started_here = isinstance(command, StartWorkflow) and f"{state.partition}-{record.offset}" == instance
        if not mine and not started_here and not (command is not None and _touches(command, instance, task)):
            return
        at = iso(command.at if command is not None else state.now)
        entries.append(
            {
                "offset": record.offset,
                "time": at,
                "kind": "command",
                "type": tag,
                "data": msgspec.to_builtins(command) if command is not None else None,
            }
        )
        for ev in mine:
            data = msgspec.to_builtins(ev)
            entries.append(
                {"offset": record.offset, "time": at, "kind": "event", "type": data.pop("type"), "data": data}
            )

    with source.commands() as commands, gc_paused():
        state = walk_instance(source, commands, partition, instance, sink)
    return entries, state
