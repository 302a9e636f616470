"""The embedded master: folds the commands stream, writes events with their offsets, runs effects.

Crash safety without two copies of the truth:
- events are written (and fsynced) before their effects run; on restart the master reads
  the last events batch to know which commands were decided, refolds the commands up to
  it (state only), and continues after it;
- the effects still owed are derived from the state (`pending_effects`) and re-run; the
  worker recognises an attempt it already started by its claim file, so nothing runs twice.
Time enters only as `CheckDue` commands appended to the same log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.commands import CheckDue
from easysched_es.core.events import EFFECT_TYPES, Event, EventBatch, WorkflowDefined
from easysched_es.core.state import State
from easysched_es.core.step import pending_effects
from easysched_es.log.base import Record
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import PartitionHalted, SkipFound, Skips, fold_stream, scan_for_skip
from easysched_es.runtime.snapshots import SnapshotStore

log = logging.getLogger(__name__)

EffectSink = Callable[[Event], None]

# A definition this big is snapshotted at once, so that CLI calls (snapshot + tail) do not
# validate and compile it again each time.
BIG_DEFINITION_TASKS = 1_000


class EmbeddedMaster:
    """The one master of an embedded data directory (the caller holds the master lock)."""

    def __init__(
        self,
        data: DataDir,
        effects: EffectSink,
        *,
        snapshot_every: int = 50_000,
        batch_records: int = 2_000,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.data = data
        self.commands = data.commands()
        self.events = data.events()
        self.snapshots = SnapshotStore(data.snapshots)
        self.effects = effects
        self.snapshot_every = snapshot_every
        self.batch_records = batch_records
        self.clock = clock
        self.state = State()
        self.wake = threading.Event()
        self._since_snapshot = 0
        self._tick_in_flight = False
        self._snapshot_due = False
        self._stuck: tuple[int, int] | None = None
        # A command whose application raised stops the partition (see `poll`); `skips` are
        # the operator's skips found since, honoured by every refold.
        self.halted: PartitionHalted | None = None
        self._skip_scan = 0
        self.skips: Skips = {}

    def recover(self) -> int:
        """Cut torn tails, rebuild the state, and re-run the effects it still owes.

        Returns how many effects were re-submitted.
        """
        for stream in (self.commands, self.events):
            cut = stream.repair_tail()
            if cut:
                log.warning("cut a torn tail of %d bytes from %s", cut, stream.directory)
        self._halt_file().unlink(missing_ok=True)  # the first poll says again if it still is
        self._rebuild()
        owed = pending_effects(self.state)
        for effect in owed:
            self.effects(effect)
        return len(owed)

    def _rebuild(self) -> None:
        """The state as of the last decided command: newest snapshot + the commands up to it."""
        while True:
            state = self.snapshots.load() or State()
            decided = self._last_decided(state.last_offset)
            try:
                if decided > state.last_offset:
                    fold_stream(self.commands, state, until=decided, skips=self.skips)
            except SkipFound as found:
                self.skips[found.offset] = found.skip
                continue
            self.state = state
            return

    def _last_decided(self, floor: int) -> int:
        """The offset of the last command whose events are in the events stream."""
        last = self.events.last_record()
        if last is None or last.corrupt is not None:
            return floor
        return max(floor, decode_batch(last.payload).offset)

    def poll(self) -> int:
        """Decide every command available now; return how many were applied."""
        payloads: list[bytes] = []
        effects: list[Event] = []
        state = self.state

        def sink(record: Record, events: list[Event], tag: str) -> None:
            payloads.append(encode(EventBatch(offset=record.offset, at=state.now, command=tag, events=events)))
            if tag == "check_due":
                self._tick_in_flight = False
            elif tag == "define" and any(
                isinstance(ev, WorkflowDefined) and len(ev.definition.tasks) >= BIG_DEFINITION_TASKS for ev in events
            ):
                self._snapshot_due = True
            for ev in events:
                if isinstance(ev, EFFECT_TYPES):
                    effects.append(ev)

        if self.halted is not None and not self._skip_found():
            return 0
        try:
            applied = fold_stream(self.commands, state, sink=sink, max_records=self.batch_records, skips=self.skips)
        except (SkipFound, PartitionHalted) as stop:
            # The state is spoilt by the failed command: write what was decided before it,
            # then fold again from the snapshot (with the skip, or to wait for one).
            self._decided(payloads, effects, len(payloads))
            if isinstance(stop, SkipFound):
                self.skips[stop.offset] = stop.skip
                log.warning(
                    "passing over the command at offset %d (it raised %s): skipped by the command at offset %d: %s",
                    stop.offset, stop.skip.error, stop.skip.skip_offset, stop.skip.reason,
                )
            else:
                self.halted, self._skip_scan = stop, stop.after
                log.error("%s", stop)
                # Clients then fold at once (and say so) instead of waiting for a decision.
                self._halt_file().write_text(str(stop) + "\n")
            self._rebuild()
            return len(payloads)
        if not applied:
            self._check_stuck_tail()
            return 0
        self._stuck = None
        self._decided(payloads, effects, applied)
        return applied

    def _check_stuck_tail(self) -> None:
        """Cut a torn frame the reader is stuck at (seen on two polls in a row, then checked under the lock).

        A frame still being written completes within one write; one that stays incomplete is
        torn, and commands appended after it would never be read. The append lock makes the
        check exact: no one is writing while it is held.
        """
        end = self.commands.end()
        if end <= self.state.position:
            self._stuck = None
            return
        seen = (self.state.position, end)
        if self._stuck != seen:
            self._stuck = seen
            return
        self._stuck = None
        cut = self.commands.repair_tail()
        if cut:
            log.warning("cut a torn frame of %d bytes at offset %d of the commands log while running",
                        cut, self.state.position)

    def _decided(self, payloads: list[bytes], effects: list[Event], applied: int) -> None:
        if not payloads:
            return
        self.events.append(payloads)
        for effect in effects:
            self.effects(effect)
        self._since_snapshot += applied
        if self._since_snapshot >= self.snapshot_every or self._snapshot_due:
            self.snapshot()

    def _skip_found(self) -> bool:
        """Whether the command the partition stopped on now has a skip after it (then go on)."""
        assert self.halted is not None
        offset = self.halted.failure.offset
        found, self._skip_scan = scan_for_skip(self.commands, 0, self._skip_scan, offset)
        if found is None:
            return False
        log.warning("a skip of offset %d is in the log: the partition goes on", offset)
        self.halted = None
        self._halt_file().unlink(missing_ok=True)
        return True

    def _halt_file(self) -> Path:
        return self.data.halted

    def snapshot(self) -> None:
        """Write a snapshot of the state as it stands."""
        self.snapshots.save(self.state, events_position=self.events.end())
        self._since_snapshot = 0
        self._snapshot_due = False

    def tick(self) -> int | None:
        """Append a CheckDue if the earliest timer is due; return the next due time (or None)."""
        due = self.state.queue.earliest()
        if due is None or self._tick_in_flight or self.halted is not None:
            return due
        now = self.clock()
        if now >= due:
            self.commands.append([encode(CheckDue(at=now, now=now))])
            self._tick_in_flight = True
        return due

    def run(self, stop: threading.Event, *, min_wait: float = 0.001, max_wait: float = 0.02) -> None:
        """Fold, tick and wait for work until `stop` is set."""
        wait = min_wait
        while not stop.is_set():
            applied = self.poll()
            due = self.tick()
            if applied:
                wait = min_wait
                continue
            # External clients append without waking us: poll, backing off while idle.
            timeout = wait
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self.clock()) / 1000))
            self.wake.wait(timeout)
            self.wake.clear()
            wait = min(max_wait, wait * 2)

    def close(self) -> None:
        """Snapshot and release the streams."""
        self.snapshot()
        self.commands.close()
        self.events.close()
