"""Rerun, recover and force-success: commands that make a finished instance run again.

- `rerun` (DolphinScheduler's REPEAT_RUNNING): every task of a finished instance runs again.
- `recover` (START_FAILURE_TASK_PROCESS): a FAILURE or STOP instance re-runs the tasks that
  ended FAILURE, KILL or NEED_FAULT_TOLERANCE and everything downstream of them, keeping the
  rest; tasks never submitted (their upstream failed) start once their upstreams are done.
- `force-success`: a failed or killed task of a finished instance becomes FORCED_SUCCESS, so
  that a later `recover` runs what follows it.

The instance keeps its id, parameters, base time and definition version. A discarded task run
leaves its last attempt number in `WorkflowInstance.attempts`, so the next run's attempts go on
from it (dispatch identities and attempt log files never repeat) while its retries count afresh
(`TaskInstance.attempt_base`). Only a finished instance can run again, so there is no timer,
dispatch or process of the old run left (DESIGN.md section 6 holds: nothing of a killed task
is pending, and the new run's tasks are new task instances).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easysched_es.core import capacity, workflow
from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.state import (
    FAILURE,
    FORCED_SUCCESS,
    KILL,
    NEED_FAULT_TOLERANCE,
    WF_FINAL,
    WF_RUNNING,
    WF_SUCCESS,
    State,
    UpstreamRecord,
    WorkflowInstance,
)
from easysched_es.core.tasks.base import Out, task_changed, version

REPEAT_RUNNING = "REPEAT_RUNNING"
START_FAILURE_TASK_PROCESS = "START_FAILURE_TASK_PROCESS"
RECOVERABLE = frozenset({FAILURE, KILL, NEED_FAULT_TOLERANCE})
"""The task end states `recover` re-runs and `force-success` accepts."""


class RecoveryError(Exception):
    """The command cannot apply (the message says why and what to do); nothing changed."""


def _finished_instance(state: State, instance_id: str, verb: str) -> WorkflowInstance:
    inst = state.instances.get(instance_id)
    if inst is None:
        raise RecoveryError(f"unknown instance {instance_id!r}")
    if inst.state not in WF_FINAL:
        raise RecoveryError(f"instance {inst.id} is {inst.state}; only a finished instance (SUCCESS, FAILURE, STOP) "
                            f"can {verb}: stop it first")
    return inst


def _check_reopen(state: State, inst: WorkflowInstance, verb: str) -> None:
    if inst.parent:
        raise RecoveryError(f"instance {inst.id} was started by SUB_WORKFLOW task {inst.parent_task!r} of instance "
                            f"{inst.parent}: {verb} the parent instance instead")
    if not state.workflows[inst.workflow].online:
        raise RecoveryError(f"workflow {inst.workflow!r} is OFFLINE: release it before you {verb} its instances")
    most = version(state, inst).definition.max_active_instances
    if most > 0 and (capacity.active_instances(state, inst.workflow) >= most
                     or state.capacity.serial.get(inst.workflow)):
        raise RecoveryError(f"workflow {inst.workflow!r} has max_active_instances {most} running or queued: "
                            f"{verb} instance {inst.id} when one of them has ended")


def _downstream_closure(state: State, inst: WorkflowInstance, names: list[str]) -> list[str]:
    """`names` and every task downstream of them that has a task instance, in definition order."""
    dv = version(state, inst)
    seen = set(names)
    todo = list(names)
    while todo:
        for d in dv.downstream[todo.pop()]:
            if d not in seen and d in inst.tasks:
                seen.add(d)
                todo.append(d)
    return [n for n in dv.order if n in seen]


def _reopen(state: State, inst: WorkflowInstance, discard: list[str], command_type: str, out: Out) -> None:
    """Discard the runs of the `discard` tasks and run the instance again from what is left."""
    for name in discard:
        ti = inst.tasks.pop(name)
        if ti.attempt:
            inst.attempts[name] = ti.attempt
    inst.state = WF_RUNNING
    inst.ended = None
    inst.reopened += 1
    state.record_upstream(inst.workflow, UpstreamRecord(inst.id, inst.base_time, WF_RUNNING, {},
                                                        scheduled=inst.schedule_time is not None))
    for hook in workflow.REOPENED:
        hook(state, inst)
    out.append(e.WorkflowReopened(instance=inst.id, command_type=command_type, tasks=discard, kept=len(inst.tasks)))
    verb = "rerun" if command_type == REPEAT_RUNNING else "recover"
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING, reason=f"{verb} requested"))
    held = capacity.hold_instance(state, inst, out)  # registers it as active; never holds (checked before)
    assert not held
    dv = version(state, inst)
    # The whole order, not the roots: after a recover, the tasks to start sit below kept successes.
    workflow.submit(state, inst, dv, dv.order, out)
    workflow.maybe_finish(state, inst, out)


def _rerun(state: State, cmd: c.RerunWorkflow, offset: int, out: Out) -> None:
    inst = _finished_instance(state, cmd.instance, "be rerun")
    _check_reopen(state, inst, "rerun")
    _reopen(state, inst, list(inst.tasks), REPEAT_RUNNING, out)


def _recover(state: State, cmd: c.RecoverWorkflow, offset: int, out: Out) -> None:
    inst = _finished_instance(state, cmd.instance, "be recovered")
    if inst.state == WF_SUCCESS:
        raise RecoveryError(f"instance {inst.id} succeeded: nothing to recover (rerun runs it all again)")
    _check_reopen(state, inst, "recover")
    failed = [n for n, ti in inst.tasks.items() if ti.state in RECOVERABLE]
    _reopen(state, inst, _downstream_closure(state, inst, failed), START_FAILURE_TASK_PROCESS, out)


def _force_success(state: State, cmd: c.ForceTaskSuccess, offset: int, out: Out) -> None:
    inst = _finished_instance(state, cmd.instance, "have a task forced to success")
    ti = inst.tasks.get(cmd.task)
    if ti is None:
        known = cmd.task in version(state, inst).index
        why = "never ran in this instance" if known else "does not exist in this workflow"
        raise RecoveryError(f"task {cmd.task!r} of instance {inst.id} {why}; nothing to force")
    if ti.state not in RECOVERABLE:
        raise RecoveryError(f"task {cmd.task!r} of instance {inst.id} is {ti.state}; only a task that ended "
                            f"{', '.join(sorted(RECOVERABLE))} can be forced to success")
    ti.state = FORCED_SUCCESS
    task_changed(inst, ti, out, "forced success by user")
    # DEPENDENT checks on this task see it succeed, like the instance's own recover will.
    record = state.upstream.get(inst.workflow, {}).get(inst.id)
    if record is not None and cmd.task in record.task_states:
        record.task_states = {**record.task_states, cmd.task: FORCED_SUCCESS}  # a copy: events share the dict


HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {
    c.RerunWorkflow: _rerun,
    c.RecoverWorkflow: _recover,
    c.ForceTaskSuccess: _force_success,
}
