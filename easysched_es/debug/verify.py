"""Verify: replay the commands log and compare with the recorded events, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.events import Event, EventBatch
from easysched_es.core.state import State
from easysched_es.log.base import Record
from easysched_es.runtime.datadir import DataDir
from easysched_es.runtime.fold import fold_stream


@dataclass
class VerifyReport:
    """The outcome of a verification."""

    commands: int = 0
    verified: int = 0
    undecided: int = 0
    divergence: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True when every recorded batch equals the replayed one."""
        return self.divergence is None


def verify(data: DataDir) -> VerifyReport:
    """Refold every command from scratch and compare each batch with the recorded events log."""
    report = VerifyReport()
    with data.events() as events_stream:
        recorded = iter(events_stream.iter_records(0))
        state = State()

        def sink(record: Record, events: list[Event], tag: str) -> None:
            report.commands += 1
            if report.divergence is not None:
                return
            expected = encode(EventBatch(offset=record.offset, at=state.now, command=tag, events=events))
            got = next(recorded, None)
            if got is None:
                report.undecided += 1
                return
            if got.payload != expected:
                report.divergence = {
                    "offset": record.offset,
                    "expected": msgspec.to_builtins(decode_batch(expected)),
                    "recorded": msgspec.to_builtins(decode_batch(got.payload)) if got.corrupt is None else got.corrupt,
                }
                return
            report.verified += 1

        with data.commands() as commands:
            fold_stream(commands, state, sink=sink, progress=True)
        if report.divergence is None and next(recorded, None) is not None:
            report.divergence = {"offset": None, "reason": "the events log has more batches than there are commands"}
    return report
