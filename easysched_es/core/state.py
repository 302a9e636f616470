"""The master's state: definitions, instances, task instances and the delay queue, as one value.

`State` is mutated in place by `step` (the fold is the hot path). `snapshot()` turns it into
a msgspec value whose encoding is canonical, so two states are equal exactly when their
snapshots encode to the same bytes.
"""

from __future__ import annotations

import bisect

import msgspec

from easysched_es.core.backfill_state import Backfill
from easysched_es.core.definitions import TaskDef, WorkflowDefinition, topological_order
from easysched_es.core.delay_queue import DelayQueue, TimerEntry
from easysched_es.core.events import SendAlert
from easysched_es.core.requests import RequestRecord
from easysched_es.core.slots import Capacity, CapacityData

# Workflow instance states (DolphinScheduler names).
WF_RUNNING = "RUNNING_EXECUTION"
WF_READY_PAUSE = "READY_PAUSE"
WF_PAUSE = "PAUSE"
WF_READY_STOP = "READY_STOP"
WF_STOP = "STOP"
WF_FAILURE = "FAILURE"
WF_SUCCESS = "SUCCESS"
WF_FINAL = frozenset({WF_STOP, WF_FAILURE, WF_SUCCESS})
# Started while its workflow had max_active_instances running: it waits for one to end.
WF_SERIAL_WAIT = "SERIAL_WAIT"

# Task instance states.
SUBMITTED = "SUBMITTED_SUCCESS"
DISPATCH = "DISPATCH"
RUNNING = "RUNNING_EXECUTION"
DELAY = "DELAY_EXECUTION"
PAUSE = "PAUSE"
KILL = "KILL"
FAILURE = "FAILURE"
SUCCESS = "SUCCESS"
FORCED_SUCCESS = "FORCED_SUCCESS"
NEED_FAULT_TOLERANCE = "NEED_FAULT_TOLERANCE"
# A branch not taken by CONDITIONS or SWITCH, and a task all of whose upstreams were skipped.
SKIPPED = "SKIPPED"
TASK_FINAL = frozenset({KILL, FAILURE, SUCCESS, FORCED_SUCCESS, SKIPPED})
TASK_OK = frozenset({SUCCESS, FORCED_SUCCESS})


class DefinitionVersion(msgspec.Struct, array_like=True):
    """One stored version of a workflow with its derived DAG."""

    version: int
    definition: WorkflowDefinition
    order: list[str]
    downstream: dict[str, list[str]]
    index: dict[str, int]
    roots: list[str] = []

    def task(self, name: str) -> TaskDef:
        """The task definition by name (KeyError if absent)."""
        return self.definition.tasks[self.index[name]]


def compile_definition(definition: WorkflowDefinition, version: int) -> DefinitionVersion:
    """Derive the order and downstream edges once, at define time."""
    downstream: dict[str, list[str]] = {t.name: [] for t in definition.tasks}
    for t in definition.tasks:
        for up in t.upstream:
            downstream[up].append(t.name)
    index = {t.name: i for i, t in enumerate(definition.tasks)}
    roots = [t.name for t in definition.tasks if not t.upstream]
    return DefinitionVersion(version, definition, topological_order(definition), downstream, index, roots)


class TaskInstance(msgspec.Struct, omit_defaults=True):
    """The current attempt of one task in one workflow instance."""

    name: str
    type: str
    state: str = SUBMITTED
    attempt: int = 0
    # Attempts made by earlier runs of the task (rerun, recover): retries count from here.
    attempt_base: int = 0
    pid: int | None = None
    worker: str | None = None
    exit_code: int | None = None
    # The process of the current attempt may still exist after a kill, until the worker
    # confirms it is gone. The task is KILL from the moment the kill is applied.
    kill_pending: bool = False
    started: int | None = None
    ended: int | None = None
    # DEPENDENT: when the first check ran (for failure_waiting_time).
    first_check: int | None = None
    # Output parameters: those the task set (on success), and those it received from its
    # upstream tasks when it started (see core/outputs.py).
    outputs: dict[str, str] = {}
    inputs: dict[str, str] = {}
    # Why a logic task ended as it did (the branch chosen, why a task was skipped).
    note: str = ""
    # SUB_WORKFLOW: the id of the child instance it started.
    child: str = ""
    # SHELL on Kafka: the incarnation of `worker` that claimed (or took over) the attempt; 0 =
    # a worker without incarnations, not fenced (core/fencing.py).
    incarnation: int = 0


class WorkflowInstance(msgspec.Struct, omit_defaults=True):
    """One run of a workflow definition version."""

    id: str
    workflow: str
    version: int
    state: str
    base_time: int
    started: int
    params: dict[str, str] = {}
    schedule_time: int | None = None
    ended: int | None = None
    tasks: dict[str, TaskInstance] = {}
    env: dict[str, str] = {}
    # The IANA zone its time parameters are computed in ("" = UTC): its schedule's zone.
    zone: str = ""
    command_type: str = ""  # "" = START_PROCESS; SCHEDULER when a schedule started it
    # `start --timezone`: the IANA zone its DEPENDENT date windows are taken in ("" = none given;
    # see `dependent_zone`).
    window_zone: str = ""
    # A child instance started by a SUB_WORKFLOW task: the parent instance and that task.
    parent: str = ""
    parent_task: str = ""
    # The last attempt number of each task run discarded by a rerun or recover (core/recovery.py):
    # the task's next run goes on from it, so attempt ids (and their log files) never repeat.
    attempts: dict[str, int] = {}
    # How many times a rerun or recover made it run again: its second run's alerts get keys of
    # their own (core/alerts.py), so a receiver deduplicating by key still sees them.
    reopened: int = 0
    # Started from a task (`start --from-task`): the tasks it runs (a dict for O(1) lookups in a
    # stable order); {} = every task of the definition.
    only: dict[str, bool] = {}
    # The backfill that started it (COMPLEMENT_DATA, core/backfill.py); "" = none.
    backfill: str = ""

    def dependent_zone(self) -> str:
        """The zone of its DEPENDENT date windows ("" = UTC): `start --timezone`, else its
        schedule's zone if a schedule started it (derived, so older snapshots stay as they were)."""
        return self.window_zone or (self.zone if self.command_type in ("SCHEDULER", "COMPLEMENT_DATA") else "")


SHARED_TASK_STATES = 100_000
"""Distinct `task_states` dicts a state shares between its DEPENDENT records (a memory bound)."""


class UpstreamRecord(msgspec.Struct, array_like=True, omit_defaults=True):
    """What a DEPENDENT check needs to know of one instance of a workflow."""

    instance: str
    base_time: int
    state: str
    task_states: dict[str, str]
    # When it finished (0 while it runs) and whether it had a schedule time: DolphinScheduler
    # picks the deciding instance of a window by these (see `State.latest_upstream`).
    ended: int = 0
    scheduled: bool = False


def _created(record: UpstreamRecord) -> tuple[int, int]:
    """Creation order from the id `P-N` (N: the offset of its start command), like DS's ids."""
    partition, _, offset = record.instance.rpartition("-")
    try:
        return int(offset), int(partition)
    except ValueError:
        return -1, -1


def deciding(records: list[UpstreamRecord]) -> UpstreamRecord | None:
    """The instance that decides a window, as DolphinScheduler's `findLastWorkflowInterval`.

    Among the scheduled instances (schedule time in the window) the one that finished last,
    and likewise among the manual ones (start time in the window); an unfinished one counts
    only when none of its kind finished (MySQL sorts NULL end times last in `end_time desc`).
    Of the two, the one created later (DS: the higher id) decides.
    """
    best: dict[bool, UpstreamRecord] = {}
    for r in records:
        cur = best.get(r.scheduled)
        if cur is None or (r.ended, _created(r)) >= (cur.ended, _created(cur)):
            best[r.scheduled] = r
    if not best:
        return None
    return max(best.values(), key=_created)


class WorkflowEntry(msgspec.Struct):
    """All versions of a workflow and whether it is ONLINE."""

    versions: list[DefinitionVersion]
    online: bool = True

    @property
    def latest(self) -> DefinitionVersion:
        """The newest version."""
        return self.versions[-1]


class Schedule(msgspec.Struct, omit_defaults=True):
    """A workflow's cron schedule and where it stands (see `core/schedules.py`)."""

    workflow: str
    cron: str
    zone: str = "UTC"
    start: int | None = None
    end: int | None = None
    overlap: str = "SKIP"
    catchup_window: int = 0
    online: bool = True
    params: dict[str, str] = {}
    # The nominal time its one SCHEDULE delay-queue entry is due at; None: no entry.
    next_fire: int | None = None
    # Instances it started that have not finished, and fires waiting for them (BUFFER_*).
    running: list[str] = []
    buffer: list[int] = []


class PendingAlert(msgspec.Struct, omit_defaults=True):
    """An alert not yet delivered: its current attempt, and whether a retry timer holds it."""

    send: SendAlert
    max_attempts: int
    backoff_ms: int
    waiting: bool = False


class Snapshot(msgspec.Struct, omit_defaults=True):
    """The whole state as data: what is written to the snapshot store."""

    partition: int
    last_offset: int
    position: int
    now: int
    workflows: dict[str, WorkflowEntry]
    instances: dict[str, WorkflowInstance]
    upstream: dict[str, dict[str, UpstreamRecord]]
    workers: dict[str, int]
    timers: list[TimerEntry]
    timer_seq: int
    # Heartbeat timeouts of workers that asked to be watched (see commands.Heartbeat).
    worker_timeouts: dict[str, int] = {}
    # Commands passed over by an operator's skip that the skip command has not confirmed yet.
    skipped: dict[int, int] = {}
    schedules: dict[str, Schedule] = {}
    # Worker slots, pools and the wait queue for slots (core/capacity.py); absent if unused.
    capacity: CapacityData | None = None
    # Recent client request ids and their first decisions (core/requests.py).
    requests: dict[str, RequestRecord] = {}
    # Alerts not yet delivered, by idempotency key (core/alerts.py).
    alerts: dict[str, PendingAlert] = {}
    # Backfills by id (core/backfill.py).
    backfills: dict[str, Backfill] = {}
    # Worker incarnations (core/fencing.py): the newest heard of, and the newest declared lost.
    incarnations: dict[str, int] = {}
    lost_incarnations: dict[str, int] = {}


class State:
    """The mutable state of one partition's master."""

    __slots__ = (
        "_shared_task_states", "_upstream_by_time", "alerts", "backfills", "capacity", "fire_seq", "incarnations",
        "instances", "last_offset", "lost_incarnations", "now", "partition", "position", "queue", "requests",
        "schedules", "skipped", "upstream", "worker_timeouts", "workers", "workflows",
    )

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.last_offset = -1
        # Where the reader resumes in the commands stream after `last_offset` (offsets need
        # not be contiguous). Kept by the runtime that feeds the fold, not by `step`.
        self.position = 0
        self.now = 0
        self.workflows: dict[str, WorkflowEntry] = {}
        self.instances: dict[str, WorkflowInstance] = {}
        # workflow -> instance id -> record, for DEPENDENT checks.
        self.upstream: dict[str, dict[str, UpstreamRecord]] = {}
        # Derived from `upstream` (never snapshotted): per workflow, the records sorted by base
        # time (ties in insertion order), so a DEPENDENT check bisects instead of scanning history.
        self._upstream_by_time: dict[str, tuple[list[int], list[UpstreamRecord]]] = {}
        # Derived (never snapshotted): one dict object per distinct `task_states` of the records
        # (most records of a workflow have the same, like all SUCCESS), shared, never mutated
        # (a change replaces the record's dict: recovery.py), so a record costs no dict of its own.
        self._shared_task_states: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.workers: dict[str, int] = {}
        self.worker_timeouts: dict[str, int] = {}
        self.schedules: dict[str, Schedule] = {}
        # (offset, count) of instances schedules started in the step at that offset: their ids.
        # Derived and never snapshotted: a step starts from count 0 at its new offset.
        self.fire_seq: tuple[int, int] = (-1, 0)
        self.queue = DelayQueue()
        # Offset of a command passed over by a skip -> offset of that skip (until it is applied).
        self.skipped: dict[int, int] = {}
        self.capacity = Capacity()
        self.requests: dict[str, RequestRecord] = {}
        self.alerts: dict[str, PendingAlert] = {}
        self.backfills: dict[str, Backfill] = {}
        self.incarnations: dict[str, int] = {}
        self.lost_incarnations: dict[str, int] = {}

    def snapshot(self) -> Snapshot:
        """The state as a msgspec value (timers in firing order)."""
        return Snapshot(
            partition=self.partition,
            last_offset=self.last_offset,
            position=self.position,
            now=self.now,
            workflows=self.workflows,
            instances=self.instances,
            upstream=self.upstream,
            workers=self.workers,
            worker_timeouts=self.worker_timeouts,
            schedules=self.schedules,
            timers=self.queue.entries(),
            timer_seq=self.queue.seq,
            skipped=self.skipped,
            capacity=self.capacity.data(),
            requests=self.requests,
            alerts=self.alerts,
            backfills=self.backfills,
            incarnations=self.incarnations,
            lost_incarnations=self.lost_incarnations,
        )

    @classmethod
    def restore(cls, snap: Snapshot) -> State:
        """Rebuild a state from a snapshot."""
        state = cls(snap.partition)
        state.last_offset = snap.last_offset
        state.position = snap.position
        state.now = snap.now
        state.workflows = snap.workflows
        state.instances = snap.instances
        state.upstream = snap.upstream
        for records in snap.upstream.values():
            prev: dict[str, str] | None = None
            for record in records.values():
                # Neighbours mostly hold equal dicts: a compare is cheaper than the shared lookup.
                if record.task_states == prev:
                    record.task_states = prev
                else:
                    prev = record.task_states = state.shared_task_states(record.task_states)
        state.workers = snap.workers
        state.worker_timeouts = snap.worker_timeouts
        state.schedules = snap.schedules
        state.queue = DelayQueue.restore(snap.timers, snap.timer_seq)
        state.skipped = snap.skipped
        state.capacity = Capacity.restore(snap.capacity)
        state.requests = snap.requests
        state.alerts = snap.alerts
        state.backfills = snap.backfills
        state.incarnations = snap.incarnations
        state.lost_incarnations = snap.lost_incarnations
        return state


    def new_instance_id(self, offset: int) -> str:
        """The id of an instance the fold itself starts in the step at `offset` (a schedule's fire,
        a backfill's date): P-O, then P-O-1, P-O-2, ... for further ones in the same step."""
        at, k = self.fire_seq if self.fire_seq[0] == offset else (offset, 0)
        self.fire_seq = (at, k + 1)
        return f"{self.partition}-{offset}" + (f"-{k}" if k else "")

    def shared_task_states(self, task_states: dict[str, str]) -> dict[str, str]:
        """The one shared dict equal to `task_states` (it, the first time); never mutate it."""
        key = tuple(task_states.items())
        shared = self._shared_task_states.get(key)
        if shared is None:
            if len(self._shared_task_states) >= SHARED_TASK_STATES:
                self._shared_task_states.clear()  # a bound: sharing saves memory, it decides nothing
            shared = self._shared_task_states[key] = task_states
        return shared

    def record_upstream(self, workflow: str, record: UpstreamRecord) -> None:
        """Add (or replace) what DEPENDENT checks know of one instance of `workflow`."""
        record.task_states = self.shared_task_states(record.task_states)
        records = self.upstream.setdefault(workflow, {})
        old = records.get(record.instance)
        records[record.instance] = record
        index = self._upstream_by_time.get(workflow)
        if index is None:
            return
        times, recs = index
        if old is None:
            at = bisect.bisect_right(times, record.base_time)
            times.insert(at, record.base_time)
            recs.insert(at, record)
        elif old.base_time == record.base_time:
            recs[recs.index(old, bisect.bisect_left(times, old.base_time))] = record
        else:
            # Rare (a base time that changed): rebuild lazily, in the dict's order.
            del self._upstream_by_time[workflow]

    def latest_upstream(self, workflow: str, start: int, end: int) -> UpstreamRecord | None:
        """The instance of `workflow` that decides the window [start, end) (`deciding`), or None."""
        index = self._upstream_by_time.get(workflow)
        if index is None:
            ordered = sorted(self.upstream.get(workflow, {}).values(), key=lambda r: r.base_time)
            index = self._upstream_by_time[workflow] = ([r.base_time for r in ordered], ordered)
        times, recs = index
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
        if lo == hi:
            return None
        return recs[lo] if hi == lo + 1 else deciding(recs[lo:hi])


def worker_deadline(state: State) -> int | None:
    """The earliest time a watched worker is declared lost if it sends no heartbeat, or None."""
    deadlines = [state.workers.get(w, 0) + t for w, t in state.worker_timeouts.items()]
    return min(deadlines) if deadlines else None


def active(task: TaskInstance) -> bool:
    """A task still counts as running work: not final, or killed with its process not yet gone."""
    return task.state not in TASK_FINAL or task.kill_pending
