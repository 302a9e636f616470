"""The delay queue: every future action of the scheduler, as part of its state.

A heap ordered by (due, seq) with lazy deletion, plus a dict from key to the live entry.
`seq` is a counter kept in the state, so ties fire in insertion order on every replay.
Add, cancel and pop-due are O(log n) amortised; "what is pending for task X" is exact,
because the dict holds only live entries.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

# Kinds of entry. A task's entries are keyed (instance, task, kind); there is at most one
# entry per key, so setting an existing key moves it.
DEPENDENT_CHECK = "DEPENDENT_CHECK"
RETRY = "RETRY"
TIMEOUT = "TIMEOUT"
KINDS = (DEPENDENT_CHECK, RETRY, TIMEOUT)

TimerKey = tuple[str, str, str]


class TimerEntry(msgspec.Struct, array_like=True):
    """One live entry, as it appears in a snapshot or a listing."""

    due: int
    seq: int
    instance: str
    task: str
    kind: str


class DelayQueue:
    """Pending timers keyed by (instance, task, kind)."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, TimerKey]] = []
        self._live: dict[TimerKey, tuple[int, int]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def set(self, key: TimerKey, due: int) -> None:
        """Add the entry, or move it if the key is already pending."""
        self._seq += 1
        item = (due, self._seq)
        self._live[key] = item
        heapq.heappush(self._heap, (due, self._seq, key))
        # Lazy deletion leaves stale heap items behind; rebuild before they dominate.
        if len(self._heap) > 64 and len(self._heap) > 3 * len(self._live):
            self._compact()

    def cancel(self, key: TimerKey) -> bool:
        """Remove the entry; True if it was pending."""
        return self._live.pop(key, None) is not None

    def cancel_task(self, instance: str, task: str) -> list[str]:
        """Remove every entry of one task; return the kinds that were pending."""
        live = self._live
        cancelled: list[str] = []
        for kind in KINDS:
            if live.pop((instance, task, kind), None) is not None:
                cancelled.append(kind)
        return cancelled

    def due_of(self, key: TimerKey) -> int | None:
        """The due time of a pending entry, or None."""
        item = self._live.get(key)
        return None if item is None else item[0]

    def pending_for(self, instance: str, task: str) -> list[str]:
        """The kinds pending for one task, exactly."""
        live = self._live
        return [kind for kind in KINDS if (instance, task, kind) in live]

    def earliest(self) -> int | None:
        """The due time of the first live entry, or None when the queue is empty."""
        heap, live = self._heap, self._live
        while heap:
            due, seq, key = heap[0]
            if live.get(key) == (due, seq):
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, now: int) -> list[tuple[TimerKey, int]]:
        """Remove and return every live entry due at or before `now`, in (due, seq) order."""
        heap, live = self._heap, self._live
        fired: list[tuple[TimerKey, int]] = []
        while heap and heap[0][0] <= now:
            due, seq, key = heapq.heappop(heap)
            if live.get(key) == (due, seq):
                del live[key]
                fired.append((key, due))
        return fired

    def pop_next(self, now: int, max_seq: int) -> tuple[TimerKey, int] | None:
        """Remove and return the first live entry due at or before `now` and set at or
        before counter value `max_seq`, or None.

        Firing entries one at a time lets the action of one entry cancel the entries after
        it (a kill in the same tick). Entries set while firing (seq > max_seq) wait for the
        next tick; they sort after every older due entry, since none is due before `now`.
        """
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            due, seq, key = heap[0]
            if live.get(key) != (due, seq):
                heapq.heappop(heap)
                continue
            if seq > max_seq:
                return None
            heapq.heappop(heap)
            del live[key]
            return key, due
        return None

    def entries(self) -> list[TimerEntry]:
        """Every live entry in firing order."""
        return [
            TimerEntry(due, seq, key[0], key[1], key[2])
            for key, (due, seq) in sorted(self._live.items(), key=lambda kv: kv[1])
        ]

    @property
    def seq(self) -> int:
        """The tie-breaking counter (part of the state, so snapshots keep it)."""
        return self._seq

    @classmethod
    def restore(cls, entries: Iterable[TimerEntry], seq: int) -> DelayQueue:
        """Rebuild a queue from a snapshot's entries and counter."""
        queue = cls()
        queue._seq = seq
        for e in entries:
            key = (e.instance, e.task, e.kind)
            queue._live[key] = (e.due, e.seq)
        queue._compact()
        return queue

    def _compact(self) -> None:
        self._heap = [(due, seq, key) for key, (due, seq) in self._live.items()]
        heapq.heapify(self._heap)
