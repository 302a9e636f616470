"""The delay queue: every future action of the scheduler, as part of its state.

A heap ordered by (due, seq) with lazy deletion, plus a dict from key to the live entry.
`seq` is a counter kept in the state, so ties fire in insertion order on every replay.
Add, cancel and pop-due are O(log n) amortised; "what is pending for task X" is exact,
because the dict holds only live entries.

Memory (a million pending timers is a target): an entry is ONE int, `due, seq, slot` packed
(`due * 2**80 + seq * 2**32 + slot`), so int order is (due, seq) order. The heap holds these ints
and the dict maps each key to its int (the same object); `slot` indexes a list of keys, which
is how a popped int finds its key. A key keeps its slot while it is pending (moving it only
changes the int); a freed slot is reused. A heap int is live iff the dict maps its slot's key
to that very int, so stale ints (moved, cancelled, or a reused slot) are skipped. No tuple per
entry in the heap or the dict, versus (due, seq, key) and (due, seq) before.
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


_SLOT_BITS = 32
_SEQ_BITS = 48
_LOW = _SEQ_BITS + _SLOT_BITS
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_SEQ_MASK = (1 << _SEQ_BITS) - 1


def _pack(due: int, seq: int, slot: int) -> int:
    # `+`, not `|`: a negative due still orders first, and `>> _LOW` floors back to it.
    return (due << _LOW) + (seq << _SLOT_BITS) + slot


class DelayQueue:
    """Pending timers keyed by (instance, task, kind)."""

    __slots__ = ("_free", "_heap", "_keys", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[int] = []  # packed entries, live and stale
        self._live: dict[TimerKey, int] = {}  # key -> its live packed entry
        self._keys: list[TimerKey | None] = []  # slot -> key (None: free)
        self._free: list[int] = []  # free slots
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def _slot(self, key: TimerKey) -> int:
        """A slot for a key that is not pending."""
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
            return slot
        self._keys.append(key)
        return len(self._keys) - 1

    def _release(self, packed: int) -> None:
        slot = packed & _SLOT_MASK
        self._keys[slot] = None
        self._free.append(slot)

    def set(self, key: TimerKey, due: int) -> None:
        """Add the entry, or move it if the key is already pending."""
        self._seq += 1
        old = self._live.get(key)
        slot = self._slot(key) if old is None else old & _SLOT_MASK
        packed = _pack(due, self._seq & _SEQ_MASK, slot)
        self._live[key] = packed
        heapq.heappush(self._heap, packed)
        # Lazy deletion leaves stale heap items behind; rebuild before they dominate.
        if len(self._heap) > 64 and len(self._heap) > 3 * len(self._live):
            self._compact()

    def cancel(self, key: TimerKey) -> bool:
        """Remove the entry; True if it was pending."""
        packed = self._live.pop(key, None)
        if packed is None:
            return False
        self._release(packed)
        return True

    def cancel_task(self, instance: str, task: str) -> list[str]:
        """Remove every entry of one task; return the kinds that were pending."""
        live = self._live
        cancelled: list[str] = []
        for kind in KINDS:
            packed = live.pop((instance, task, kind), None)
            if packed is not None:
                self._release(packed)
                cancelled.append(kind)
        return cancelled

    def due_of(self, key: TimerKey) -> int | None:
        """The due time of a pending entry, or None."""
        packed = self._live.get(key)
        return None if packed is None else packed >> _LOW

    def pending_for(self, instance: str, task: str) -> list[str]:
        """The kinds pending for one task, exactly."""
        live = self._live
        return [kind for kind in KINDS if (instance, task, kind) in live]

    def _key_of(self, packed: int) -> TimerKey | None:
        """The key whose live entry `packed` is, or None for a stale heap item."""
        key = self._keys[packed & _SLOT_MASK]
        if key is None or self._live.get(key) != packed:
            return None
        return key

    def earliest(self) -> int | None:
        """The due time of the first live entry, or None when the queue is empty."""
        heap = self._heap
        while heap:
            if self._key_of(heap[0]) is not None:
                return heap[0] >> _LOW
            heapq.heappop(heap)
        return None

    def _take(self, key: TimerKey, packed: int) -> tuple[TimerKey, int]:
        del self._live[key]
        self._release(packed)
        return key, packed >> _LOW

    def pop_due(self, now: int) -> list[tuple[TimerKey, int]]:
        """Remove and return every live entry due at or before `now`, in (due, seq) order."""
        heap = self._heap
        fired: list[tuple[TimerKey, int]] = []
        while heap and heap[0] >> _LOW <= now:
            packed = heapq.heappop(heap)
            key = self._key_of(packed)
            if key is not None:
                fired.append(self._take(key, packed))
        return fired

    def pop_next(self, now: int, max_seq: int) -> tuple[TimerKey, int] | None:
        """Remove and return the first live entry due at or before `now` and set at or
        before counter value `max_seq`, or None.

        Firing entries one at a time lets the action of one entry cancel the entries after
        it (a kill in the same tick). Entries set while firing (seq > max_seq) wait for the
        next tick; they sort after every older due entry, since none is due before `now`.
        """
        heap = self._heap
        while heap and heap[0] >> _LOW <= now:
            packed = heap[0]
            key = self._key_of(packed)
            if key is None:
                heapq.heappop(heap)
                continue
            if (packed >> _SLOT_BITS) & _SEQ_MASK > max_seq & _SEQ_MASK:
                return None
            heapq.heappop(heap)
            return self._take(key, packed)
        return None

    def entries(self) -> list[TimerEntry]:
        """Every live entry in firing order."""
        return [
            TimerEntry(packed >> _LOW, (packed >> _SLOT_BITS) & _SEQ_MASK, key[0], key[1], key[2])
            for key, packed in sorted(self._live.items(), key=lambda kv: kv[1])
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
        # A decoded snapshot has a string object per field: share them (an instance's timers
        # name one id, and task names and kinds repeat across instances).
        names: dict[str, str] = {}
        for e in entries:
            key = (names.setdefault(e.instance, e.instance), names.setdefault(e.task, e.task),
                   names.setdefault(e.kind, e.kind))
            queue._live[key] = _pack(e.due, e.seq & _SEQ_MASK, queue._slot(key))
        queue._compact()
        return queue

    def _compact(self) -> None:
        if len(self._free) > 64 and len(self._free) > len(self._live):
            # Mostly free slots: number the pending keys afresh (the slot is not part of the order).
            self._keys, self._free = [], []
            for key, packed in self._live.items():
                self._live[key] = ((packed >> _SLOT_BITS) << _SLOT_BITS) + self._slot(key)
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)
