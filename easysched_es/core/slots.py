"""The capacity part of the state: announced worker slots, pools and the wait queue for slots.

This module holds the data and its mechanics only (it imports nothing of the state, so that
`state.py` can hold a `Capacity`); the rules that use it are in `capacity.py`.

Resources are strings: `g:GROUP` (a worker group), `p:POOL` (a pool), `i:INSTANCE` (an
instance's `max_parallel_tasks`). The wait queue is one heap per resource signature (tasks
that need the same resources queue together), with lazy deletion checked against the dict
of live entries, so a kill takes a task out in O(1) and the snapshot holds only live entries.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import msgspec

ALL_GROUPS = "*"
"""The group a worker announces when it serves every group (the embedded worker)."""

TaskKey = tuple[str, str]
Item = tuple[int, int, int, str, str]  # task priority, workflow priority, seq, instance, task


class WorkerSlots(msgspec.Struct, array_like=True):
    """What one worker announced: its group and its slot count."""

    group: str
    slots: int


class WaitEntry(msgspec.Struct, array_like=True):
    """A task waiting for a slot, as it appears in a snapshot or a listing."""

    task_priority: int
    workflow_priority: int
    seq: int
    instance: str
    task: str
    resources: list[str]
    since: int = 0


class CapacityData(msgspec.Struct, omit_defaults=True):
    """The capacity part of a snapshot (absent while nothing is limited)."""

    workers: dict[str, WorkerSlots] = {}
    pools: dict[str, int] = {}
    waiting: list[WaitEntry] = []
    seq: int = 0
    # workflow -> instances in SERIAL_WAIT (max_active_instances), oldest first.
    serial: dict[str, list[str]] = {}


def share(slots: int, partitions: int, partition: int) -> int:
    """One partition's share of `slots` split between `partitions` independent shards (Kafka)."""
    return slots // partitions + (partition < slots % partitions)


def _order(w: WaitEntry) -> tuple[int, int, int]:
    return (w.task_priority, w.workflow_priority, w.seq)


class Capacity:
    """Slots announced, pools, the wait queue, and a cache of who holds which slots."""

    __slots__ = ("_waiting", "active", "holders", "pools", "queues", "seq", "serial", "waiters", "workers")

    def __init__(self) -> None:
        self.workers: dict[str, WorkerSlots] = {}
        self.pools: dict[str, int] = {}
        self.seq = 0
        self._waiting: dict[TaskKey, WaitEntry] = {}
        self.queues: dict[tuple[str, ...], list[Item]] = {}
        # Live waiters per resource: a newly ready task queues behind them instead of overtaking.
        self.waiters: dict[str, int] = {}
        # resource -> (instance, task) -> attempt. A cache derived from task states (never
        # snapshotted); None means "rebuild from the instances" (after a restore, or when the
        # set of announced groups changed and tasks resolve to other groups).
        self.holders: dict[str, dict[TaskKey, int]] | None = None
        self.serial: dict[str, list[str]] = {}
        # workflow -> ids of its instances that may be active (a cache pruned when counted;
        # None = rebuild from the instances, after a restore).
        self.active: dict[str, list[str]] | None = None

    def data(self) -> CapacityData | None:
        """The snapshot form; None when there is nothing to keep, so old states encode as before."""
        if not (self.workers or self.pools or self._waiting or self.seq or self.serial):
            return None
        return CapacityData(workers=self.workers, pools=self.pools, waiting=self.waiting(), seq=self.seq,
                            serial=self.serial)

    @classmethod
    def restore(cls, data: CapacityData | None) -> Capacity:
        """Rebuild from a snapshot's capacity part."""
        cap = cls()
        if data is not None:
            cap.workers, cap.pools, cap.seq, cap.serial = data.workers, data.pools, data.seq, data.serial
            for w in data.waiting:
                cap.push(w)
        return cap

    def waiting(self) -> list[WaitEntry]:
        """The wait queue in dispatch order (best first)."""
        return sorted(self._waiting.values(), key=_order)

    def waiting_count(self) -> int:
        """How many tasks wait for a slot."""
        return len(self._waiting)

    def entry(self, instance: str, task: str) -> WaitEntry | None:
        """The wait entry of a task, or None if it does not wait."""
        return self._waiting.get((instance, task))

    def groups(self) -> set[str]:
        """The groups some worker announced slots for."""
        return {w.group for w in self.workers.values()}

    def announce(self, worker: str, group: str, slots: int) -> bool:
        """A worker's heartbeat announced its group and slots; True if the set of groups changed."""
        before = self.groups()
        self.workers[worker] = WorkerSlots(group, slots)
        return self._changed(before)

    def withdraw(self, worker: str) -> bool:
        """A worker that sets no limit any more (`easysched run --slots 0`); True if the groups changed."""
        before = self.groups()
        self.workers.pop(worker, None)
        return self._changed(before)

    def _changed(self, before: set[str]) -> bool:
        if self.groups() == before:
            return False
        self.holders = None  # tasks resolve to other groups now: recount from the task states
        return True

    def requeue(self, resolve: Callable[[WaitEntry], list[str]]) -> None:
        """Give every waiting task its resources anew (same priority and place in the queue)."""
        entries = self.waiting()
        self._waiting, self.queues, self.waiters = {}, {}, {}
        for w in entries:
            w.resources = resolve(w)
            self.push(w)

    def worker_lost(self, worker: str) -> None:
        """A worker declared lost offers no slots until it announces again."""
        known = self.workers.get(worker)
        if known is not None:
            known.slots = 0

    def push(self, entry: WaitEntry) -> None:
        """Queue a task for a slot."""
        self._waiting[(entry.instance, entry.task)] = entry
        for r in entry.resources:
            self.waiters[r] = self.waiters.get(r, 0) + 1
        item = (entry.task_priority, entry.workflow_priority, entry.seq, entry.instance, entry.task)
        heapq.heappush(self.queues.setdefault(tuple(entry.resources), []), item)

    def forget(self, instance: str, task: str) -> bool:
        """Take a task out of the wait queue (kill, stop, pause); True if it was waiting."""
        entry = self._waiting.pop((instance, task), None)
        if entry is None:
            return False
        for r in entry.resources:
            self.waiters[r] -= 1
        return True

    def head(self, sig: tuple[str, ...]) -> Item | None:
        """The best live entry of one signature's queue (stale heads dropped), or None."""
        queue = self.queues.get(sig)
        while queue:
            item = queue[0]
            live = self._waiting.get((item[3], item[4]))
            if live is not None and live.seq == item[2]:
                return item
            heapq.heappop(queue)
        self.queues.pop(sig, None)
        return None
