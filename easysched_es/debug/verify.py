"""Verify: replay the commands log and compare with the recorded events, batch by batch.

Each partition is refolded from offset 0 and compared with its partition of the events log, in
order: the first batch that differs (or is missing while later ones exist, or is extra) is the
divergence. Commands after the last recorded batch are not decided yet (a live master may still
be at work): they are counted as undecided, not as a divergence. The events are read up to
their end as of before the commands are folded, so verify also works beside a running master.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.events import Event, EventBatch
from easysched_es.core.state import State
from easysched_es.log.base import Record, Stream
from easysched_es.runtime.fold import LogSource, fold_stream, records


@dataclass
class VerifyReport:
    """The outcome of a verification."""

    commands: int = 0
    verified: int = 0
    undecided: int = 0
    partitions: int = 0
    divergence: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True when every recorded batch equals the replayed one."""
        return self.divergence is None


def verify(source: LogSource) -> VerifyReport:
    """Refold every partition from scratch and compare each batch with the recorded events log."""
    report = VerifyReport()
    with source.commands() as commands, source.events() as events:
        for partition in range(commands.partitions):
            verify_partition_into(report, commands, events, partition)
            if not report.ok:
                break
    return report


def verify_partition_into(report: VerifyReport, commands: Stream, events: Stream, partition: int) -> State:
    """Verify one partition, adding to `report`; returns the replayed state."""
    report.partitions += 1
    # Only the batches recorded before the commands are read: each has its command then, even
    # while a live master goes on deciding new commands.
    recorded = records(events, partition, end=events.end(partition))
    state = State(partition)

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
            report.divergence = {
                "partition": partition,
                "offset": record.offset,
                "expected": msgspec.to_builtins(decode_batch(expected)),
                "recorded": msgspec.to_builtins(decode_batch(got.payload)) if got.corrupt is None else got.corrupt,
            }
            return
        report.verified += 1

    fold_stream(commands, state, partition=partition, sink=sink, progress=True)
    if report.divergence is None and next(recorded, None) is not None:
        report.divergence = {
            "partition": partition,
            "offset": None,
            "reason": "the events log has more batches than there are commands",
        }
    return state
