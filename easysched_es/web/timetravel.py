"""Time travel: an instance as the master's fold had it right after one command offset.

The state comes from the replay code the CLI's `replay` uses (`debug.replay.start_for`: the
nearest kept snapshot of the sparse index before the offset, then the log), never from the
projection, so what the page shows at an offset is exactly what the master knew then, timers
included. The command at that offset and the events it caused come from the same fold: the
start is a snapshot strictly before the offset, so that command is always folded here.

A replay keeps its state: the next jump forward from it folds only the records in between.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from easysched_es.core.codec import decode_command
from easysched_es.core.events import Event
from easysched_es.core.state import State
from easysched_es.debug.replay import start_for
from easysched_es.debug.views import iso
from easysched_es.log.base import LogError, Record
from easysched_es.runtime.fold import LogSource, Sink, fold_stream, instance_partition
from easysched_es.runtime.gc_pause import gc_paused


class TimeTravelError(ValueError):
    """The offset or the instance cannot be replayed (the message says why)."""


class TimeTravel:
    """Replays of one log source, remembering the last state of each partition."""

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._last: dict[int, tuple[State, dict[str, Any]]] = {}

    def at(self, instance_id: str, offset: int) -> dict[str, Any]:
        """The instance, its tasks and its timers after the command at `offset`, with that command and its events."""
        try:
            partition = instance_partition(instance_id)
        except ValueError as exc:
            raise TimeTravelError(str(exc)) from None
        if not 0 <= partition < self.source.partitions:
            raise TimeTravelError(f"no partition {partition} in this log")
        if offset < 0:
            raise TimeTravelError("the offset must be >= 0")
        caused: dict[str, Any] = {}

        def sink(record: Record, events: list[Event], tag: str) -> None:
            if record.offset <= offset:
                caused.clear()
                caused.update(offset=record.offset, tag=tag, payload=record.payload, corrupt=record.corrupt,
                              events=events)

        with self._lock:
            try:
                return self._at(partition, instance_id, offset, caused, sink)
            except LogError as exc:  # a point retention deleted, a broken log: say why
                raise TimeTravelError(str(exc)) from None

    def _at(self, partition: int, instance_id: str, offset: int, caused: dict[str, Any], sink: Sink) -> dict[str, Any]:
        state, last_caused = self._last.pop(partition, (None, {}))
        if state is not None and state.last_offset == offset:
            caused = last_caused
        else:
            with self.source.commands() as commands, gc_paused():
                if state is not None and state.last_offset < offset:
                    caused.update(last_caused)  # in case nothing lies between
                else:
                    state = start_for(self.source, commands, partition, until=offset - 1).state
                fold_stream(commands, state, until=offset, partition=partition, sink=sink)
        self._last[partition] = (state, caused)
        return _view(state, instance_id, offset, caused)


def _view(state: State, instance_id: str, offset: int, caused: dict[str, Any]) -> dict[str, Any]:
    inst = state.instances.get(instance_id)
    command = None
    events: list[dict[str, Any]] = []
    if caused.get("offset") == state.last_offset:
        if caused["corrupt"] is None:
            try:
                command = msgspec.to_builtins(decode_command(caused["payload"]))
            except msgspec.MsgspecError:
                command = None
        events = [msgspec.to_builtins(ev) for ev in caused["events"]]
    return {
        "offset": offset,
        "applied_offset": state.last_offset,
        "time": iso(state.now),
        "exists": inst is not None,
        "state": inst.state if inst is not None else None,
        "tasks": {} if inst is None else {
            name: {"state": t.state, "attempt": t.attempt, "pid": t.pid, "exit_code": t.exit_code,
                   "kill_pending": t.kill_pending}
            for name, t in inst.tasks.items()
        },
        "timers": [
            {"task": e.task, "kind": e.kind, "due": iso(e.due)}
            for e in state.queue.entries() if e.instance == instance_id
        ],
        "command": command,
        "events": [e for e in events if e.get("instance") in (instance_id, None, "")],
    }
