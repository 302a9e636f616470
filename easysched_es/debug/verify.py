"""Verify: replay the commands log and compare with the recorded events, batch by batch.

Each partition is refolded and compared with its partition of the events log, in order: the
first batch that differs (or is missing while later ones exist, or is extra) is the divergence,
reported with both event lists side by side. Commands after the last recorded batch are not
decided yet (a live master may still be at work): they are counted as undecided, not as a
divergence. The events are read up to their end as of before the commands are folded, so
verify also works beside a running master.

This is also the upgrade check: run the new version's `verify` on a copy of a production data
directory (`verify --log DIR`); any decision the new code takes differently is the divergence.

A fold starts at offset 0, or, with `since`, at the nearest kept snapshot at or before it; when
retention deleted the start of the log, at the oldest kept snapshot (the report says which).
`verify_snapshots` checks that every kept snapshot equals the replay up to its offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.events import Event, EventBatch
from easysched_es.core.state import State
from easysched_es.debug.positions import events_position, first_offset
from easysched_es.debug.replay import start_for
from easysched_es.log.base import Record, Stream
from easysched_es.runtime.fold import LogSource, fold_through, records
from easysched_es.runtime.gc_pause import gc_paused


@dataclass
class VerifyReport:
    """The outcome of a verification."""

    commands: int = 0
    verified: int = 0
    undecided: int = 0
    partitions: int = 0
    divergence: dict[str, Any] | None = field(default=None)
    # Where each partition's fold started (None: offset 0) and why.
    started_from: dict[int, int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every recorded batch equals the replayed one."""
        return self.divergence is None


def verify(source: LogSource, since: int | None = None) -> VerifyReport:
    """Refold every partition (from 0, or from the snapshot nearest `since`) and compare with the events log."""
    report = VerifyReport()
    with source.commands() as commands, source.events() as events, gc_paused():
        for partition in range(commands.partitions):
            start: State | None = None
            hint = None
            if since is not None or first_offset(commands, partition) > 0:
                begin = start_for(source, commands, partition, until=since if since is not None else _oldest(source))
                start, hint = begin.state, begin.events_position
                report.notes.append(f"partition {partition}: {begin.note}")
            verify_partition_into(report, commands, events, partition, start=start, events_hint=hint)
            if not report.ok:
                break
    return report


def _oldest(source: LogSource) -> int | None:
    store = getattr(source, "snapshot_store", None)
    metas = store().metas() if callable(store) else []
    return metas[0].offset if metas else None


def verify_partition_into(
    report: VerifyReport,
    commands: Stream,
    events: Stream,
    partition: int,
    start: State | None = None,
    events_hint: int | None = None,
) -> State:
    """Verify one partition (from `start`, default the empty state), adding to `report`; returns the replayed state.

    `events_hint` is where the start snapshot says the events after it begin (checked before use).
    """
    report.partitions += 1
    state = start or State(partition)
    report.started_from[partition] = None if start is None else state.last_offset
    begin = 0 if start is None else events_position(events, partition, state.last_offset, events_hint)
    # Only the batches recorded before the commands are read: each has its command then, even
    # while a live master goes on deciding new commands.
    recorded = records(events, partition, begin, end=events.end(partition))

    def sink(record: Record, evs: list[Event], tag: str) -> None:
        report.commands += 1
        if report.divergence is not None:
            return
        expected = encode(EventBatch(offset=record.offset, at=state.now, command=tag, events=evs, partition=partition))
        got = next(recorded, None)
        if got is None:
            report.undecided += 1
            return
        if got.payload != expected:
            report.divergence = divergence(partition, record.offset, expected, got)
            return
        report.verified += 1

    fold_through(commands, state, partition=partition, sink=sink, progress=True)
    if report.divergence is None and next(recorded, None) is not None:
        report.divergence = {
            "partition": partition,
            "offset": None,
            "reason": "the events log has more batches than there are commands",
        }
    return state


def divergence(partition: int, offset: int, expected: bytes, got: Record) -> dict[str, Any]:
    """The first divergence: both batches, and their events paired up side by side."""
    replayed = msgspec.to_builtins(decode_batch(expected))
    out: dict[str, Any] = {"partition": partition, "offset": offset, "command": replayed["command"]}
    if got.corrupt is not None:
        out.update(reason=f"the recorded batch is corrupt: {got.corrupt}", expected=replayed, recorded=None)
        return out
    try:
        recorded = msgspec.to_builtins(decode_batch(got.payload))
    except msgspec.MsgspecError as exc:
        out.update(reason=f"the recorded batch does not decode: {exc}", expected=replayed, recorded=None)
        return out
    exp_events, rec_events = replayed.get("events", []), recorded.get("events", [])
    pairs = []
    first = None
    for i in range(max(len(exp_events), len(rec_events))):
        exp = exp_events[i] if i < len(exp_events) else None
        rec = rec_events[i] if i < len(rec_events) else None
        same = exp == rec
        if not same and first is None:
            first = i
        pairs.append({"index": i, "same": same, "replayed": exp, "recorded": rec})
    heads = {k: v for k, v in replayed.items() if k != "events"} != {k: v for k, v in recorded.items() if k != "events"}
    if first is not None:
        out["reason"] = f"event {first} differs"
    elif heads:
        out["reason"] = "the batch header (offset, time or command) differs"
    else:
        out["reason"] = "the encodings differ (same values: a field order or default changed)"
    out.update(first_difference=first, side_by_side=pairs, expected=replayed, recorded=recorded)
    return out


def side_by_side(div: dict[str, Any], width: int = 60) -> list[str]:
    """The divergence's event pairs as text columns: replayed (this code) | recorded (the log)."""
    lines = [f"{'replayed by this version':<{width}} | recorded in the log"]
    for pair in div.get("side_by_side", []):
        mark = "  " if pair["same"] else "!="
        exp, rec = pair["replayed"] or {}, pair["recorded"] or {}
        # The fields that differ come first, so they survive the column width.
        differing = [k for k in {**exp, **rec} if exp.get(k) != rec.get(k)]
        left = _short(pair["replayed"], differing, width)
        right = _short(pair["recorded"], differing, width)
        lines.append(f"{left:<{width}} {mark} {right}")
    return lines


def _short(event: dict[str, Any] | None, first: list[str], width: int) -> str:
    if event is None:
        return "(none)"
    keys = ["type", *(k for k in first if k != "type"), *(k for k in event if k not in first and k != "type")]
    text = " ".join(f"{k}={event[k]}" for k in keys if k in event and k not in ("env", "definition", "dispatch"))
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class SnapshotCheck:
    """One kept snapshot compared with the replay up to its offset."""

    offset: int
    ok: bool
    detail: str = ""


def verify_snapshots(source: LogSource, partition: int = 0) -> list[SnapshotCheck]:
    """Replay the log once and compare each kept snapshot with the replayed state at its offset.

    When retention deleted the start of the log the oldest snapshot is the base and is not
    itself checked (nothing older can rebuild it); it says so.
    """
    get = getattr(source, "snapshot_store", None)
    if not callable(get):
        return []
    store = get()
    metas = store.metas()
    checks: list[SnapshotCheck] = []
    with source.commands() as commands, gc_paused():
        state = State(partition)
        if first_offset(commands, partition) > 0 and metas:
            base = metas.pop(0)
            state = store.restore(base.offset)
            checks.append(SnapshotCheck(base.offset, True, "the base: retention deleted the log before it"))
        for meta in metas:
            fold_through(commands, state, until=meta.offset, partition=partition)
            if state.last_offset != meta.offset:
                checks.append(SnapshotCheck(meta.offset, False, f"the log has no command at offset {meta.offset}"))
                continue
            try:
                payload = store.read_payload(meta.offset)
            except ValueError as exc:
                checks.append(SnapshotCheck(meta.offset, False, str(exc)))
                continue
            same = payload == encode(state.snapshot())
            checks.append(SnapshotCheck(meta.offset, same, "" if same else "differs from the replayed state"))
    return checks
