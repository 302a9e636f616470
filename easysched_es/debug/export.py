"""Export a bug as a file, import it anywhere: `easysched export` / `easysched import`.

Two kinds of slice:

- **instance**: the commands that touched one instance, renumbered into a fresh log whose
  replay makes the same decisions for it. Besides its own commands (and every `check_due` that
  fired one of its timers) the slice carries what those decisions read from the rest of the
  log: every version of its workflow's definition up to the one it runs; the upstream facts
  its DEPENDENT items can see (instances of the upstream workflows whose base time falls in
  one of its windows, as `upstream_finished` commands, placed before or after the command that
  changed them exactly as they were ordered in the original step); the heartbeats of watched
  workers; and the clock, as `heartbeat` commands of the worker `easysched.export.clock`
  wherever the original clock was ahead of the slice's. In the fresh log the instance's id is
  `0-<offset of its start>`; `instance_map` in the file says old -> new.
- **range**: the raw commands from one offset to another, byte for byte, with the state just
  before the first as a snapshot. Import writes them at their original offsets (the log starts
  there), so ids and offsets are unchanged. Embedded logs only (Kafka offsets are not bytes).

The file: 8 bytes of magic `ESLOG\\x00\\r\\n`, then `<II` (payload length, CRC-32C), then the
payload, one msgpack `ExportFile`. `format` says the layout (readers refuse a newer one with a
reason); `written_by` says which easysched wrote it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import crc32c
import msgspec

from easysched_es.core import commands as c
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.events import Event, EventBatch, WorkflowFinished, WorkflowStarted
from easysched_es.core.state import State, UpstreamRecord
from easysched_es.debug.positions import first_offset
from easysched_es.debug.replay import start_for
from easysched_es.debug.walk import command_of, walk_instance
from easysched_es.log.base import LogError, Record, Stream
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.fold import LogSource, fold_through, instance_partition, records
from easysched_es.runtime.gc_pause import gc_paused
from easysched_es.runtime.snapshots import SnapshotStore

FORMAT = 1
MAGIC = b"ESLOG\x00\r\n"
_HEADER = struct.Struct("<II")
CLOCK_WORKER = "easysched.export.clock"


class ExportFile(msgspec.Struct, omit_defaults=True):
    """A self-contained slice of a log."""

    format: int
    written_by: str
    kind: str  # "instance" | "range"
    commands: list[bytes]
    description: str = ""
    instance_map: dict[str, str] = {}
    first_offset: int = 0  # where the commands start in the imported log
    snapshot: bytes | None = None  # range: the state just before the first command
    source: dict[str, Any] = {}


class ExportError(LogError):
    """An export file is unusable, or an export or import cannot be done; the message says why."""


def version() -> str:
    """`easysched-es X.Y.Z`, the writer named in every export file."""
    try:
        return f"easysched-es {metadata.version('easysched-es')}"
    except metadata.PackageNotFoundError:
        return "easysched-es (unknown version)"


# ---- the file --------------------------------------------------------------------------------


def dump(export: ExportFile) -> bytes:
    """The bytes of an export file."""
    payload = encode(export)
    return MAGIC + _HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def load(data: bytes, name: str = "the file") -> ExportFile:
    """Parse an export file, refusing anything damaged or written in a newer format."""
    if not data.startswith(MAGIC):
        raise ExportError(f"{name} is not an easysched export (it does not start with {MAGIC!r})")
    try:
        length, crc = _HEADER.unpack_from(data, len(MAGIC))
    except struct.error:
        raise ExportError(f"{name} is truncated (no header)") from None
    payload = data[len(MAGIC) + _HEADER.size :]
    if len(payload) != length:
        raise ExportError(f"{name} is truncated or has trailing bytes ({len(payload)} bytes of payload, "
                          f"the header says {length})")
    if crc32c.crc32c(payload) != crc:
        raise ExportError(f"{name} is damaged: its CRC does not match; export it again")
    try:
        head = msgspec.msgpack.decode(payload, type=_Head)
    except msgspec.MsgspecError as exc:
        raise ExportError(f"{name} does not decode: {exc}") from None
    if head.format > FORMAT:
        raise ExportError(f"{name} has format {head.format}, written by {head.written_by}; this easysched reads "
                          f"format {FORMAT} at most: upgrade to import it")
    try:
        return msgspec.msgpack.decode(payload, type=ExportFile)
    except msgspec.MsgspecError as exc:
        raise ExportError(f"{name} does not decode: {exc}") from None


class _Head(msgspec.Struct):
    format: int
    written_by: str = "?"


def write_file(path: Path, export: ExportFile) -> int:
    """Write an export file; returns its size."""
    data = dump(export)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror}") from None
    return len(data)


def read_file(path: Path) -> ExportFile:
    """Read and check an export file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    return load(data, str(path))


# ---- instance export ---------------------------------------------------------------------------


class _Slice:
    """Collects, in log order, what the instance's slice holds (see the module docstring)."""

    def __init__(self, instance: str, partition: int) -> None:
        self.instance, self.partition = instance, partition
        # ("command", Command, clock before, original offset or -1) | ("upstream", (workflow, record), at, -1)
        self.items: list[tuple[str, Any, int, int]] = []
        self.started: State | None = None
        self.workflows: set[str] = set()
        self.via_children: set[str] = set()
        # The instance and its SUB_WORKFLOW descendants: their commands are all in the slice.
        self.family: set[str] = {instance}

    def sink(self, state: State, record: Record, events: list[Event], tag: str, clock: int) -> None:
        command = command_of(record)
        family = self.family
        started_here = isinstance(command, c.StartWorkflow) and f"{self.partition}-{record.offset}" == self.instance
        if started_here:
            self._at_start(state, clock)
        for ev in events:  # SUB_WORKFLOW children (and theirs) belong to the slice
            if isinstance(ev, WorkflowStarted) and ev.parent in family:
                family.add(ev.instance)
        mine = [i for i, ev in enumerate(events) if getattr(ev, "instance", None) in family]
        own = started_here or bool(mine) or getattr(command, "instance", None) in family
        watched = isinstance(command, c.Heartbeat) and (
            command.timeout_ms > 0 or command.worker in state.worker_timeouts
        )
        if self.started is None:
            return
        first_mine = mine[0] if mine else len(events)
        before, after = [], []
        for i, ev in enumerate(events):
            wf = getattr(ev, "workflow", None)
            other = getattr(ev, "instance", None)
            if isinstance(ev, (WorkflowStarted, WorkflowFinished)) and other not in family and wf in self.workflows:
                rec = state.upstream.get(wf, {}).get(other)
                if rec is not None and self._visible(state, wf, rec.base_time):
                    (before if own and i < first_mine else after).append((wf, _frozen(rec)))
        if isinstance(command, c.UpstreamFinished) and command.workflow in self.workflows:
            rec = state.upstream.get(command.workflow, {}).get(command.instance)
            if rec is not None and command.instance not in family and self._visible(
                state, command.workflow, rec.base_time
            ):
                after.append((command.workflow, _frozen(rec)))
        self.items.extend(("upstream", u, clock, -1) for u in before)
        if own or watched:
            self.items.append(("command", command, clock, record.offset))
        self.items.extend(("upstream", u, state.now, -1) for u in after)

    def _visible(self, state: State, workflow: str, base_time: int) -> bool:
        """A record of `workflow` can decide a DEPENDENT check of the slice (its windows; any, via a child)."""
        if workflow in self.via_children:
            return True
        return self.started is not None and _in_windows(self.started, self.instance, workflow, base_time)

    def _at_start(self, state: State, clock: int) -> None:
        """Just after the start: the definitions, the watched workers and the upstream facts it can see."""
        self.started = state
        inst = state.instances[self.instance]
        head: list[tuple[str, Any, int, int]] = []
        # Its workflow's versions up to the one it runs, and those its SUB_WORKFLOW tasks start.
        names, todo = [inst.workflow], [inst.workflow]
        while todo:
            entry = state.workflows.get(todo.pop())
            if entry is None:
                continue
            for t in entry.latest.definition.tasks:
                target = getattr(getattr(t, "sub_workflow", None), "workflow", None)
                if target and target not in names:
                    names.append(target)
                    todo.append(target)
        for name in reversed(names):  # a SUB_WORKFLOW target is defined before the workflow naming it
            entry = state.workflows.get(name)
            if entry is None:
                continue
            upto = inst.version if name == inst.workflow else len(entry.versions)
            head.extend(("command", c.DefineWorkflow(at=clock, definition=dv.definition), clock, -1)
                        for dv in entry.versions[:upto])
        for worker, timeout in state.worker_timeouts.items():
            seen = state.workers.get(worker, 0)
            head.append(("command", c.Heartbeat(at=seen, worker=worker, timeout_ms=timeout), clock, -1))
        self.workflows = {item.workflow for item in _dependent_items(state, self.instance)}
        for name in names[1:]:
            entry = state.workflows.get(name)
            for t in entry.latest.definition.tasks if entry else []:
                for item in getattr(getattr(t, "dependence", None), "items", []):
                    if getattr(item, "workflow", None) and item.workflow not in self.workflows:
                        self.via_children.add(item.workflow)
        self.workflows |= self.via_children
        for wf in sorted(self.workflows):
            for other, rec in state.upstream.get(wf, {}).items():
                if other != self.instance and self._visible(state, wf, rec.base_time):
                    head.append(("upstream", (wf, _frozen(rec)), clock, -1))
        self.items = head

    def assemble(self, source_info: dict[str, Any]) -> ExportFile:
        """Renumber into a fresh log: offsets from 0, the instance's id after its new start offset."""
        payloads: list[bytes] = []
        offset, now = 0, 0
        old_id = self.instance

        def put(command: c.Command) -> None:
            nonlocal offset, now
            payload = encode(command)
            payloads.append(payload)
            offset += 8 + len(payload)
            if command.at > now:
                now = command.at

        # Old offset -> new offset of the exported commands: ids derive from them ("P-N", "P-N.k").
        moved: dict[int, int] = {}
        for kind, value, clock, old_offset in self.items:
            if kind == "upstream":
                wf, rec = value
                # `ended` 0 (still running) can only be said with `at` 0: the fold reads 0 as "at".
                put(c.UpstreamFinished(at=clock if rec.ended else 0, workflow=wf, instance=rec.instance,
                                       state=rec.state, base_time=rec.base_time, task_states=rec.task_states,
                                       ended=rec.ended, scheduled=rec.scheduled))
                continue
            if value is None:
                continue  # an unreadable record that touched it: nothing to carry
            if clock > now:
                put(c.Heartbeat(at=clock, worker=CLOCK_WORKER))
            if old_offset >= 0:
                moved[old_offset] = offset
            named = getattr(value, "instance", None)
            if named in self.family:
                value = msgspec.structs.replace(value, instance=_renumbered(named, moved))
            put(value)
        new_id = _renumbered(old_id, moved)
        return ExportFile(
            format=FORMAT,
            written_by=version(),
            kind="instance",
            commands=payloads,
            description=f"instance {old_id} and what its decisions read",
            instance_map={old_id: new_id, **{
                i: _renumbered(i, moved) for i in sorted(self.family - {old_id})}},
            source=source_info,
        )


def _renumbered(instance: str, moved: dict[int, int]) -> str:
    """An id of the slice in the fresh log: "P-N" -> "0-N'", a child's "P-N.k" -> "0-N'.k"."""
    tail = instance.partition("-")[2]
    head, dot, child = tail.partition(".")
    if not head.isdigit() or int(head) not in moved:
        return instance
    return f"0-{moved[int(head)]}{dot}{child}"


def _frozen(rec: UpstreamRecord) -> UpstreamRecord:
    return msgspec.structs.replace(rec, task_states=dict(rec.task_states))


def _dependent_items(state: State, instance: str) -> list[Any]:
    inst = state.instances[instance]
    dv = state.workflows[inst.workflow].versions[inst.version - 1]
    return [item for t in dv.definition.tasks for item in getattr(getattr(t, "dependence", None), "items", [])]


def _in_windows(state: State, instance: str, workflow: str, base_time: int) -> bool:
    from easysched_es.core import dependent as windows

    inst = state.instances[instance]
    for item in _dependent_items(state, instance):
        if item.workflow == workflow:
            for start, end in windows.windows(item.date_value, inst.base_time, inst.dependent_zone()):
                if start <= base_time < end:
                    return True
    return False


def export_instance(source: LogSource, instance: str) -> ExportFile:
    """The slice that reproduces `instance` (see the module docstring)."""
    try:
        partition = instance_partition(instance)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if partition >= source.partitions:
        raise ExportError(f"unknown instance {instance!r}: the log has partitions 0..{source.partitions - 1}")
    sliced = _Slice(instance, partition)
    with source.commands() as stream, gc_paused():
        walk_instance(source, stream, partition, instance, sliced.sink)
    if sliced.started is None:
        raise ExportError(f"unknown instance {instance!r}: the log never started it")
    return sliced.assemble({"instance": instance, "partition": partition})


# ---- range export --------------------------------------------------------------------------------


def export_range(source: LogSource, start: int, end: int | None = None) -> ExportFile:
    """The raw commands from offset `start` to `end` (inclusive; default the end) and the state before them."""
    if getattr(source, "snapshot_store", None) is None:
        raise ExportError("a range export reads an embedded data directory (Kafka offsets are not byte positions); "
                          "export an instance instead")
    with source.commands() as stream, gc_paused():
        begin = start_for(source, stream, 0, until=start - 1)
        state = begin.state
        fold_through(stream, state, until=start - 1)
        payloads = []
        first = None
        for record in records(stream, 0, state.position):
            if end is not None and record.offset > end:
                break
            if first is None:
                first = record.offset
            # A corrupt record is carried as a byte that never decodes: it is rejected again.
            payloads.append(record.payload if record.corrupt is None else b"\xc1")
    if first is None:
        raise ExportError(f"the log has no command at or after offset {start}"
                          + (f" up to {end}" if end is not None else ""))
    return ExportFile(
        format=FORMAT,
        written_by=version(),
        kind="range",
        commands=payloads,
        description=f"commands {first}..{end if end is not None else 'end'} and the state before them",
        first_offset=first,
        snapshot=encode(state.snapshot()) if state.last_offset >= 0 else None,
        source={"from": start, "to": end},
    )


# ---- import --------------------------------------------------------------------------------------


@dataclass
class Imported:
    """What an import wrote."""

    commands: int
    first_offset: int
    instance_map: dict[str, str]


def import_file(export: ExportFile, root: Path) -> Imported:
    """Write the slice into the empty data directory `root`: commands, the events the fold decides, the snapshot."""
    commands_dir, events_dir = root / "commands", root / "events"
    for d in (commands_dir, events_dir):
        if d.exists() and any(d.glob("*.seg")):
            raise ExportError(f"{root} already holds a log ({d} has segments): import into an empty data directory")
    commands_dir.mkdir(parents=True, exist_ok=True)
    if export.first_offset:
        (commands_dir / f"{export.first_offset:020d}.seg").touch()
    with EmbeddedStream(commands_dir) as stream, EmbeddedStream(events_dir) as events, gc_paused():
        stream.append(export.commands)
        state = State()
        if export.snapshot is not None:
            state = State.restore(decode_snapshot(export.snapshot))
            SnapshotStore(root / "snapshots").save(state, events_position=0)
        state.position = max(state.position, export.first_offset)
        batches: list[bytes] = []

        def sink(record: Record, evs: list[Event], tag: str) -> None:
            batches.append(encode(EventBatch(offset=record.offset, at=state.now, command=tag, events=evs)))

        fold_through(stream, state, sink=sink)
        events.append(batches)
    return Imported(len(export.commands), export.first_offset, export.instance_map)


def log_start(stream: Stream) -> int:
    """Where an imported or retained log starts."""
    return first_offset(stream)
