"""Capacity rules, decided in the fold: worker slots, pools and per-instance parallelism.

A SHELL attempt is dispatched only when every limited resource it belongs to has a free slot:
- its worker group (`g:NAME`): the sum of the slots the group's workers announced in their
  heartbeats (commands, so capacity is known at a definite log position). A group no worker
  announced slots for is unlimited (old logs replay unchanged). A worker announcing group `*`
  serves every group without an announcer of its own (the embedded `easysched run` worker).
  A worker declared lost keeps its entry with 0 slots until it announces again;
- its pool (`p:NAME`), whose slot count `SetPool` sets; a pool never set has 0 slots;
- its instance (`i:ID`) when the workflow sets `max_parallel_tasks`.

Without a free slot the task waits: it stays SUBMITTED_SUCCESS with the reason "waiting for
a slot: ...", in a wait queue ordered by task priority, then workflow priority, then FIFO
(`slots.py`). `drain`, run at the end of every step, dispatches waiting tasks in that order
while slots are free. A kill, stop or pause of a waiting task takes it out of the queue in
the same step (`forget`, DESIGN.md rule 6.1).

Who holds a slot is derived from task states: an attempt holds its slots while it is
DISPATCH or RUNNING, or killed with its kill not yet confirmed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import PRIORITIES, ShellTask
from easysched_es.core.slots import ALL_GROUPS, Item, TaskKey, WaitEntry
from easysched_es.core.state import (
    DISPATCH,
    RUNNING,
    SUBMITTED,
    WF_FINAL,
    WF_RUNNING,
    WF_SERIAL_WAIT,
    State,
    TaskInstance,
    WorkflowInstance,
)
from easysched_es.core.tasks.base import Out, task_changed, version

WAITING = "waiting for a slot"
MAX_SLOTS = 100_000
UNLIMITED = -1
"""Heartbeat slots meaning "this worker sets no limit": its announcement is withdrawn."""
MAX_POOL_NAME = 200


class CapacityError(ValueError):
    """A capacity command that cannot apply; the message says why."""
_RANK = {p: i for i, p in enumerate(PRIORITIES)}


def limit(state: State, resource: str) -> int | None:
    """The slot count of a resource, or None if it is unlimited."""
    kind, name = resource[0], resource[2:]
    cap = state.capacity
    if kind == "g":
        slots = [w.slots for w in cap.workers.values() if w.group == name]
        return sum(slots) if slots else None  # every announcer withdrew: no limit any more
    if kind == "p":
        return cap.pools.get(name, 0)
    inst = state.instances.get(name)
    return None if inst is None else version(state, inst).definition.max_parallel_tasks


def used(state: State, resource: str) -> int:
    """How many attempts hold a slot of `resource` now (stale holders are dropped on the way)."""
    holders = _holder_table(state).get(resource)
    if not holders:
        return 0
    for key, attempt in list(holders.items()):
        if not _holds(state, key, attempt):
            del holders[key]
    return len(holders)


def resources(state: State, inst: WorkflowInstance, tdef: ShellTask) -> tuple[str, ...]:
    """The limited resources a task of `inst` takes a slot of while it runs."""
    definition = version(state, inst).definition
    cap = state.capacity
    out: list[str] = []
    if cap.workers:
        group = tdef.worker_group or definition.worker_group
        groups = cap.groups()
        if group in groups:
            out.append(f"g:{group}")
        elif ALL_GROUPS in groups:
            out.append(f"g:{ALL_GROUPS}")
    if tdef.pool is not None:
        out.append(f"p:{tdef.pool}")
    if definition.max_parallel_tasks > 0:
        out.append(f"i:{inst.id}")
    return tuple(out)


def describe(resource: str) -> str:
    """A resource in words, for reasons and listings."""
    kind, name = resource[0], resource[2:]
    if kind == "g":
        return "every worker group" if name == ALL_GROUPS else f"worker group {name}"
    if kind == "p":
        return f"pool {name}"
    return f"max_parallel_tasks of instance {name}"


def _holds(state: State, key: TaskKey, attempt: int) -> bool:
    inst = state.instances.get(key[0])
    ti = None if inst is None else inst.tasks.get(key[1])
    return ti is not None and ti.attempt == attempt and (ti.kill_pending or ti.state in (DISPATCH, RUNNING))


def _holder_table(state: State) -> dict[str, dict[TaskKey, int]]:
    cap = state.capacity
    if cap.holders is None:
        table: dict[str, dict[TaskKey, int]] = {}
        for inst in state.instances.values():
            if inst.state in WF_FINAL:
                continue
            for ti in inst.tasks.values():
                if ti.type == "SHELL" and _holds(state, (inst.id, ti.name), ti.attempt):
                    tdef = version(state, inst).task(ti.name)
                    assert isinstance(tdef, ShellTask)
                    for r in resources(state, inst, tdef):
                        table.setdefault(r, {})[(inst.id, ti.name)] = ti.attempt
        cap.holders = table
    return cap.holders


def _hold(state: State, needs: tuple[str, ...], key: TaskKey, attempt: int) -> None:
    table = _holder_table(state)
    for r in needs:
        table.setdefault(r, {})[key] = attempt


def blocked(state: State, needs: tuple[str, ...], queued_ahead: bool = False) -> str:
    """Why a task needing `needs` cannot take slots now, or "" if it can."""
    cap = state.capacity
    for r in needs:
        most = limit(state, r)
        if most is None:
            continue
        if r[0] == "p" and r[2:] not in cap.pools:
            return f"{WAITING}: pool {r[2:]} has no slots (easysched pool set {r[2:]} --slots N)"
        # The holder table's size is an upper bound of the slots in use (stale holders are dropped
        # lazily): recount only when it reaches the limit, so a check is O(1) amortised. A reason
        # always carries the exact count (events must not depend on the cache).
        holders = _holder_table(state).get(r)
        ahead = cap.waiters.get(r, 0) if queued_ahead else 0
        if (len(holders) if holders else 0) < most and not ahead:
            continue
        busy = used(state, r)
        if busy >= most or ahead:
            extra = f", {ahead} waiting ahead" if ahead else ""
            return f"{WAITING}: {describe(r)} ({busy} of {most} busy{extra})"
    return ""


def admit(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> bool:
    """May the task's next attempt be dispatched now? If not, it joins the wait queue.

    Called before the attempt counter moves: the slots are taken for attempt `ti.attempt + 1`.
    A task never overtakes waiting tasks of its resources: it queues behind them, and the
    drain at the end of the step serves the queue in priority order.
    """
    cap = state.capacity
    if not cap.workers and tdef.pool is None and version(state, inst).definition.max_parallel_tasks <= 0:
        return True  # fast path: nothing limits the task (what `resources` would find)
    needs = resources(state, inst, tdef)
    if not needs:
        return True
    key = (inst.id, ti.name)
    cap.forget(*key)
    why = blocked(state, needs, queued_ahead=True)
    if not why:
        _hold(state, needs, key, ti.attempt + 1)
        return True
    cap.seq += 1
    wf_rank = _RANK[version(state, inst).definition.priority]
    cap.push(WaitEntry(_RANK[tdef.priority], wf_rank, cap.seq, inst.id, ti.name, list(needs), state.now))
    ti.state = SUBMITTED
    task_changed(inst, ti, out, why)
    return False


def forget(state: State, inst: WorkflowInstance, ti: TaskInstance) -> None:
    """Rule 6.1 for the wait queue: a killed, stopped or paused task waits no more."""
    state.capacity.forget(inst.id, ti.name)


def drain(state: State, out: Out) -> None:
    """Dispatch waiting tasks, best first, while their resources have free slots."""
    cap = state.capacity
    if cap.serial:
        _release_instances(state, out)
    if not cap.waiting_count():
        return
    # Imported here: shell.py imports this module for `admit`.
    from easysched_es.core.tasks.shell import dispatch_admitted

    heads: list[tuple[Item, tuple[str, ...]]] = []
    for sig in list(cap.queues):
        head = cap.head(sig)
        if head is not None:
            heads.append((head, sig))
    heapq.heapify(heads)
    while heads:
        (_, _, _, instance, task), sig = heapq.heappop(heads)
        if blocked(state, sig):
            continue  # every task of this signature needs the same full resource
        cap.forget(instance, task)
        inst = state.instances[instance]
        ti = inst.tasks[task]
        if inst.state == WF_RUNNING and ti.state == SUBMITTED:
            tdef = version(state, inst).task(task)
            assert isinstance(tdef, ShellTask)
            _hold(state, sig, (instance, task), ti.attempt + 1)
            dispatch_admitted(state, inst, ti, tdef, out)
        head = cap.head(sig)
        if head is not None:
            heapq.heappush(heads, (head, sig))


def announce(state: State, worker: str, group: str, slots: int | None) -> str:
    """Apply the slots of a heartbeat; returns why they are refused, or ""."""
    if slots is None:
        return ""
    if not UNLIMITED <= slots <= MAX_SLOTS:
        return f"slots={slots} is out of range (0 to {MAX_SLOTS}, or {UNLIMITED} for no limit)"
    if not group:
        return "a worker group name must not be empty"
    cap = state.capacity
    changed = cap.withdraw(worker) if slots == UNLIMITED else cap.announce(worker, group, slots)
    if changed:
        cap.requeue(lambda w: list(_resources_of(state, w.instance, w.task)))
    return ""


def _resources_of(state: State, instance: str, task: str) -> tuple[str, ...]:
    inst = state.instances[instance]
    tdef = version(state, inst).task(task)
    assert isinstance(tdef, ShellTask)
    return resources(state, inst, tdef)



# ---- max_active_instances ---------------------------------------------------------------


def active_instances(state: State, workflow: str) -> int:
    """How many instances of `workflow` are started and not final (SERIAL_WAIT ones excluded)."""
    cap = state.capacity
    if cap.active is None:
        cap.active = {}
    ids = cap.active.get(workflow)
    if ids is None:
        ids = cap.active[workflow] = [i.id for i in state.instances.values() if i.workflow == workflow]
    ids[:] = [i for i in ids if (inst := state.instances.get(i)) is not None
              and inst.state not in WF_FINAL and inst.state != WF_SERIAL_WAIT]
    return len(ids)


def hold_instance(state: State, inst: WorkflowInstance, out: Out) -> bool:
    """A new instance whose workflow has `max_active_instances` running waits (SERIAL_WAIT); True if held.

    Called once the instance is registered, before its first task is submitted. Waiting
    (DolphinScheduler's serial wait, Airflow's queued runs) rather than rejecting: a start is
    never lost, and a stop of a waiting instance ends it at once.
    """
    most = version(state, inst).definition.max_active_instances
    cap = state.capacity
    if most <= 0 and not (cap.active and inst.workflow in cap.active):
        return False
    busy = active_instances(state, inst.workflow)
    assert cap.active is not None  # active_instances built it
    ids = cap.active[inst.workflow]
    if inst.id in ids:
        busy -= 1  # counted by a rebuild: the new instance is registered as running
    else:
        ids.append(inst.id)
    if most <= 0 or (busy < most and not cap.serial.get(inst.workflow)):
        return False
    ids.remove(inst.id)
    inst.state = WF_SERIAL_WAIT
    cap.serial.setdefault(inst.workflow, []).append(inst.id)
    queued = len(cap.serial[inst.workflow])
    why = f"waiting: max_active_instances {most} of workflow {inst.workflow} reached ({busy} active, {queued} queued)"
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_SERIAL_WAIT, reason=why))
    return True


def _release_instances(state: State, out: Out) -> None:
    # Imported here: workflow.py imports this module for `hold_instance`.
    from easysched_es.core.workflow import submit

    cap = state.capacity
    for workflow in list(cap.serial):
        ids = cap.serial[workflow]
        ids[:] = [i for i in ids if state.instances[i].state == WF_SERIAL_WAIT]  # stopped ones are gone
        most = state.workflows[workflow].latest.definition.max_active_instances
        while ids and (most <= 0 or active_instances(state, workflow) < most):
            inst = state.instances[ids.pop(0)]
            inst.state = WF_RUNNING
            assert cap.active is not None
            cap.active[workflow].append(inst.id)
            out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING,
                                              reason="max_active_instances: an active instance ended"))
            dv = version(state, inst)
            submit(state, inst, dv, inst.only or dv.roots, out)
        if not ids:
            del cap.serial[workflow]


# ---- pools -------------------------------------------------------------------------------


def _set_pool(state: State, cmd: c.SetPool, offset: int, out: Out) -> None:
    name = cmd.pool
    if not name.strip() or len(name) > MAX_POOL_NAME:
        raise CapacityError(f"pool name must be 1 to {MAX_POOL_NAME} characters, not blank")
    if not UNLIMITED <= cmd.slots <= MAX_SLOTS:
        raise CapacityError(f"slots={cmd.slots} is out of range (0 to {MAX_SLOTS}, or {UNLIMITED} to delete)")
    pools = state.capacity.pools
    if cmd.slots == UNLIMITED:
        if name not in pools:
            raise CapacityError(f"unknown pool {name!r}: nothing to delete")
        del pools[name]
    else:
        pools[name] = cmd.slots
    out.append(e.PoolSet(pool=name, slots=cmd.slots))


HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {c.SetPool: _set_pool}
"""The capacity commands' handlers (merged into step.py's table)."""
