"""`step(state, command, offset) -> (state, events)`: the only place the scheduler's state changes.

Pure and deterministic: no clock (time comes from the command's `at` and `CheckDue.now`),
no I/O, no randomness. A command that cannot apply changes nothing and yields one
`CommandRejected` naming the reason.

The rules of DESIGN.md section 6 live here: killing a task cancels its delay-queue entries
in the same step, a killed task is never dispatched or retried again, and reports about an
attempt that no longer matters are recorded as ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from easysched_es.core import commands as c
from easysched_es.core import dependent
from easysched_es.core import events as e
from easysched_es.core.codec import decode_command
from easysched_es.core.definitions import (
    DefinitionError,
    DependentTask,
    DependItem,
    ShellTask,
    TaskDef,
    task_type,
    validate,
)
from easysched_es.core.delay_queue import DEPENDENT_CHECK, RETRY, TIMEOUT
from easysched_es.core.state import (
    DISPATCH,
    FAILURE,
    KILL,
    NEED_FAULT_TOLERANCE,
    PAUSE,
    RUNNING,
    SUBMITTED,
    SUCCESS,
    TASK_FINAL,
    TASK_OK,
    WF_FAILURE,
    WF_FINAL,
    WF_PAUSE,
    WF_READY_PAUSE,
    WF_READY_STOP,
    WF_RUNNING,
    WF_STOP,
    WF_SUCCESS,
    DefinitionVersion,
    State,
    TaskInstance,
    UpstreamRecord,
    WorkflowEntry,
    WorkflowInstance,
    compile_definition,
)

Out = list[e.Event]

_FINISH_REASONS = {s: f"task {s}" for s in (SUCCESS, FAILURE, KILL)}


# Times are epoch milliseconds up to 9999-12-31T23:59:59.999Z: a command stamped later (or
# before 1970) is rejected, so that date maths and timer arithmetic cannot fail in the fold.
MAX_TIME = 253_402_300_799_999


class SequenceError(Exception):
    """A command was applied out of log order (a gap backwards or a repeat)."""


class _Rejected(Exception):
    def __init__(self, reason: str, instance: str = "", task: str = "") -> None:
        super().__init__(reason)
        self.reason, self.instance, self.task = reason, instance, task


def step(state: State, command: c.Command, offset: int) -> tuple[State, list[e.Event]]:
    """Apply one command at log `offset`; return the state (mutated in place) and the events."""
    if offset <= state.last_offset:
        raise SequenceError(f"offset {offset} does not follow the last applied offset {state.last_offset}")
    state.last_offset = offset
    out: Out = []
    try:
        if not 0 <= command.at <= MAX_TIME:
            raise _Rejected(f"at={command.at} is out of range (epoch milliseconds, years 1970 to 9999)")
        if command.at > state.now:
            state.now = command.at
        _HANDLERS[type(command)](state, command, offset, out)
    except _Rejected as r:
        # Handlers validate before they mutate, so a rejection leaves the state untouched.
        out = [e.CommandRejected(command=_TAGS[type(command)], reason=r.reason, instance=r.instance, task=r.task)]
    return state, out


def step_record(state: State, payload: bytes, offset: int) -> tuple[State, list[e.Event], str]:
    """Decode and apply one log record; a record that does not decode is rejected, not fatal.

    Returns the state, the events and the command's type tag ("?" when it did not decode).
    """
    try:
        command = decode_command(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return reject_record(state, offset, f"malformed command record: {exc}")
    state, out = step(state, command, offset)
    return state, out, _TAGS[type(command)]


def reject_record(state: State, offset: int, reason: str) -> tuple[State, list[e.Event], str]:
    """Record a log record that cannot be used (corrupt or undecodable) as rejected."""
    if offset <= state.last_offset:
        raise SequenceError(f"offset {offset} does not follow the last applied offset {state.last_offset}")
    state.last_offset = offset
    return state, [e.CommandRejected(command="?", reason=f"{reason} (offset {offset})")], "?"


# ---- helpers ---------------------------------------------------------------------------


def _instance(state: State, instance_id: str) -> WorkflowInstance:
    inst = state.instances.get(instance_id)
    if inst is None:
        raise _Rejected(f"unknown instance {instance_id!r}", instance=instance_id)
    return inst


def _version(state: State, inst: WorkflowInstance) -> DefinitionVersion:
    return state.workflows[inst.workflow].versions[inst.version - 1]


def _set_timer(state: State, inst: WorkflowInstance, task: str, kind: str, due: int, out: Out) -> None:
    state.queue.set((inst.id, task, kind), due)
    out.append(e.TimerSet(instance=inst.id, task=task, kind=kind, due=due))


def _cancel_timers(state: State, inst: WorkflowInstance, task: str, reason: str, out: Out) -> None:
    for kind in state.queue.cancel_task(inst.id, task):
        out.append(e.TimerCancelled(instance=inst.id, task=task, kind=kind, reason=reason))


def _task_changed(inst: WorkflowInstance, ti: TaskInstance, out: Out, reason: str = "") -> None:
    out.append(
        e.TaskStateChanged(
            instance=inst.id,
            task=ti.name,
            state=ti.state,
            attempt=ti.attempt,
            task_type=ti.type,
            reason=reason,
            pid=ti.pid,
            worker=ti.worker,
            exit_code=ti.exit_code,
        )
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _instance_env(inst: WorkflowInstance) -> dict[str, str]:
    """The environment every task of an instance gets: its parameters and system values.

    Computed once per instance; dispatches share it, so a dispatch allocates no new dict.
    """
    env = dict(inst.params)
    env["EASYSCHED_WORKFLOW"] = inst.workflow
    env["EASYSCHED_INSTANCE"] = inst.id
    base = datetime.fromtimestamp(inst.base_time // 1000, tz=UTC).isoformat()
    env["DS_DATE"] = base[:10]
    env["DS_TIME"] = base[:19] + "Z"
    return env


# ---- task lifecycle --------------------------------------------------------------------


def _dispatch_effect(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask) -> e.DispatchTask:
    return e.DispatchTask(
        instance=inst.id,
        task=ti.name,
        attempt=ti.attempt,
        task_type=ti.type,
        command=tdef.command,
        env=inst.env,
        task_env=tdef.env,
        worker_group=_version(state, inst).definition.worker_group,
    )


def pending_effects(state: State) -> list[e.Event]:
    """The effects the runtime must (re)apply for the state as it stands.

    Dispatches of attempts not known to have finished, and kills whose process end is not
    confirmed. The runtime applies them after a restart; they are idempotent by
    (instance, task, attempt), so an effect that already ran is recognised, not repeated.
    """
    out: list[e.Event] = []
    for inst in state.instances.values():
        if inst.state in WF_FINAL:
            continue
        for ti in inst.tasks.values():
            if ti.type != "SHELL":
                continue
            if ti.kill_pending:
                why = "kill not yet confirmed"
                out.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason=why))
            elif ti.state in (DISPATCH, RUNNING):
                tdef = _version(state, inst).task(ti.name)
                assert isinstance(tdef, ShellTask)
                out.append(_dispatch_effect(state, inst, ti, tdef))
    return out


def _dispatch(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
    ti.attempt += 1
    ti.state = DISPATCH
    ti.pid = None
    ti.worker = None
    ti.exit_code = None
    ti.started = state.now
    ti.ended = None
    _task_changed(inst, ti, out)
    out.append(_dispatch_effect(state, inst, ti, tdef))
    if tdef.timeout is not None:
        _set_timer(state, inst, ti.name, TIMEOUT, state.now + _ms(tdef.timeout), out)


def _start_task(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: TaskDef, out: Out) -> None:
    if isinstance(tdef, ShellTask):
        _dispatch(state, inst, ti, tdef, out)
    else:
        ti.state = RUNNING
        ti.started = state.now
        ti.first_check = state.now
        _task_changed(inst, ti, out)
        _check_dependent(state, inst, ti, tdef, out)


def _item_result(state: State, item: DependItem, base: int) -> str:
    verdicts = []
    for start, end in dependent.windows(item.date_value, base):
        latest = state.latest_upstream(item.workflow, start, end)
        if latest is None or latest.state not in WF_FINAL:
            verdicts.append(dependent.WAITING)
        elif item.task is not None:
            ok = latest.task_states.get(item.task) in TASK_OK
            verdicts.append(dependent.SUCCESS if ok else dependent.FAILED)
        else:
            verdicts.append(dependent.SUCCESS if latest.state == WF_SUCCESS else dependent.FAILED)
    return dependent.combine("AND", verdicts)


def _check_dependent(
    state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: DependentTask, out: Out
) -> None:
    dep = tdef.dependence
    results = [_item_result(state, item, inst.base_time) for item in dep.items]
    verdict = dependent.combine(dep.relation, results)
    detail = ", ".join(
        f"{i.workflow}{'.' + i.task if i.task else ''}/{i.date_value}={r}"
        for i, r in zip(dep.items, results, strict=True)
    )
    out.append(e.DependentChecked(instance=inst.id, task=ti.name, result=verdict, detail=detail))
    if verdict == dependent.SUCCESS:
        _finish_task(state, inst, ti, SUCCESS, out, "dependencies satisfied")
        return
    if verdict == dependent.FAILED:
        waited = state.now - (ti.first_check or 0)
        if dep.failure_policy == "FAIL" or waited >= _ms(dep.failure_waiting_time):
            _finish_task(state, inst, ti, FAILURE, out, f"dependency failed: {detail}")
            return
    _set_timer(state, inst, ti.name, DEPENDENT_CHECK, state.now + _ms(dep.check_interval), out)


def _finish_task(
    state: State, inst: WorkflowInstance, ti: TaskInstance, new_state: str, out: Out, reason: str = ""
) -> None:
    """Move a task to a final state and let the workflow react."""
    _cancel_timers(state, inst, ti.name, _FINISH_REASONS.get(new_state) or f"task {new_state}", out)
    ti.state = new_state
    ti.ended = state.now
    _task_changed(inst, ti, out, reason)
    dv = _version(state, inst)
    if new_state in TASK_OK:
        _submit(state, inst, dv, dv.downstream[ti.name], out)
    elif new_state == FAILURE and dv.definition.failure_strategy == "END" and inst.state == WF_RUNNING:
        for other in list(inst.tasks.values()):
            if other.state not in TASK_FINAL:
                _kill(state, inst, other, f"failure strategy END after {ti.name} failed", out)
    _maybe_finish(state, inst, out)


def _kill(state: State, inst: WorkflowInstance, ti: TaskInstance, reason: str, out: Out) -> None:
    """Rule 6.1: the kill, the timer removal and the process kill are one step."""
    _cancel_timers(state, inst, ti.name, "task killed", out)
    has_process = ti.state in (DISPATCH, RUNNING) and ti.type == "SHELL"
    ti.state = KILL
    ti.ended = state.now
    ti.kill_pending = has_process
    _task_changed(inst, ti, out, reason)
    if has_process:
        out.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason=reason))


def _submit(state: State, inst: WorkflowInstance, dv: DefinitionVersion, names: Iterable[str], out: Out) -> None:
    """Start every named task whose upstreams all succeeded, if the instance is running."""
    if inst.state != WF_RUNNING:
        return
    tasks = inst.tasks
    ready = []
    for name in names:
        if name in tasks:
            continue
        tdef = dv.task(name)
        for up in tdef.upstream:
            upstream = tasks.get(up)
            if upstream is None or upstream.state not in TASK_OK:
                break
        else:
            ready.append(tdef)
    # Register the whole batch before starting any of it: a task that ends at once (a
    # DEPENDENT already satisfied or failed) must not let the workflow finish while its
    # siblings are still to start, and a kill by failure strategy END must reach them.
    for tdef in ready:
        tasks[tdef.name] = TaskInstance(name=tdef.name, type=task_type(tdef))
    for tdef in ready:
        ti = tasks[tdef.name]
        if ti.state == SUBMITTED and inst.state == WF_RUNNING:
            _start_task(state, inst, ti, tdef, out)


def _maybe_finish(state: State, inst: WorkflowInstance, out: Out) -> None:
    wf = inst.state
    if wf in WF_FINAL or wf == WF_PAUSE:
        return
    tasks = inst.tasks.values()
    running = wf == WF_RUNNING
    # One pass (this runs after every task change): a process still exists, or, while
    # running, any task is unfinished.
    for t in tasks:
        if t.kill_pending or (running and t.state not in TASK_FINAL):
            return
        if t.type == "SHELL" and t.state in (DISPATCH, RUNNING):
            return
    if wf == WF_READY_STOP:
        final = WF_STOP
    else:
        dv = _version(state, inst)
        all_ok = len(inst.tasks) == len(dv.order) and all(t.state in TASK_OK for t in tasks)
        if all_ok:
            final = WF_SUCCESS
        elif wf == WF_READY_PAUSE:
            inst.state = WF_PAUSE
            out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_PAUSE))
            return
        else:
            final = WF_FAILURE
    inst.state = final
    inst.ended = state.now
    task_states = {t.name: t.state for t in tasks}
    record = state.upstream[inst.workflow][inst.id]
    record.state = final
    record.task_states = task_states
    out.append(
        e.WorkflowFinished(
            instance=inst.id, workflow=inst.workflow, state=final, base_time=inst.base_time, task_states=task_states
        )
    )


# ---- command handlers ------------------------------------------------------------------


def _define(state: State, cmd: c.DefineWorkflow, offset: int, out: Out) -> None:
    try:
        validate(cmd.definition)
    except DefinitionError as exc:
        raise _Rejected(str(exc)) from None
    name = cmd.definition.name
    entry = state.workflows.get(name)
    if entry is None:
        entry = state.workflows[name] = WorkflowEntry(versions=[], online=cmd.release)
    dv = compile_definition(cmd.definition, len(entry.versions) + 1)
    entry.versions.append(dv)
    entry.online = cmd.release
    out.append(e.WorkflowDefined(workflow=name, version=dv.version, online=entry.online, definition=cmd.definition))


def _release(state: State, cmd: c.SetReleaseState, offset: int, out: Out) -> None:
    entry = state.workflows.get(cmd.workflow)
    if entry is None:
        raise _Rejected(f"unknown workflow {cmd.workflow!r}")
    entry.online = cmd.online
    out.append(e.ReleaseStateChanged(workflow=cmd.workflow, online=cmd.online))


def _start(state: State, cmd: c.StartWorkflow, offset: int, out: Out) -> None:
    entry = state.workflows.get(cmd.workflow)
    if entry is None:
        raise _Rejected(f"unknown workflow {cmd.workflow!r}: define it first (easysched define FILE)")
    if not entry.online:
        raise _Rejected(f"workflow {cmd.workflow!r} is OFFLINE: release it before starting it")
    if cmd.schedule_time is not None and not 0 <= cmd.schedule_time <= MAX_TIME:
        raise _Rejected(f"schedule_time={cmd.schedule_time} is out of range (epoch milliseconds, years 1970 to 9999)")
    dv = entry.latest
    params = dict(dv.definition.params)
    params.update(cmd.params)
    base = cmd.schedule_time if cmd.schedule_time is not None else state.now
    inst = WorkflowInstance(
        id=f"{state.partition}-{offset}",
        workflow=cmd.workflow,
        version=dv.version,
        state=WF_RUNNING,
        base_time=base,
        started=state.now,
        params=params,
        schedule_time=cmd.schedule_time,
        tasks={},
    )
    inst.env = _instance_env(inst)
    state.instances[inst.id] = inst
    state.record_upstream(inst.workflow, UpstreamRecord(inst.id, base, WF_RUNNING, {}))
    out.append(
        e.WorkflowStarted(
            instance=inst.id,
            workflow=inst.workflow,
            version=inst.version,
            base_time=base,
            schedule_time=cmd.schedule_time,
            params=params,
        )
    )
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING))
    _submit(state, inst, dv, dv.roots, out)


def _stop(state: State, cmd: c.StopWorkflow, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    if inst.state in WF_FINAL or inst.state == WF_READY_STOP:
        raise _Rejected(f"instance {inst.id} is already {inst.state}; nothing to stop", instance=inst.id)
    inst.state = WF_READY_STOP
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_READY_STOP, reason="stop requested"))
    for ti in list(inst.tasks.values()):
        if ti.state not in TASK_FINAL:
            _kill(state, inst, ti, "workflow stopped", out)
    _maybe_finish(state, inst, out)


def _pause(state: State, cmd: c.PauseWorkflow, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    if inst.state != WF_RUNNING:
        raise _Rejected(f"instance {inst.id} is {inst.state}; only a running instance can be paused", instance=inst.id)
    inst.state = WF_READY_PAUSE
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_READY_PAUSE, reason="pause requested"))
    for ti in inst.tasks.values():
        # Worker tasks already dispatched run to their end; logic tasks and retry waits stop here.
        if ti.state not in TASK_FINAL and not (ti.type == "SHELL" and ti.state in (DISPATCH, RUNNING)):
            _cancel_timers(state, inst, ti.name, "workflow paused", out)
            ti.state = PAUSE
            _task_changed(inst, ti, out, "workflow paused")
    _maybe_finish(state, inst, out)


def _resume(state: State, cmd: c.ResumeWorkflow, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    if inst.state not in (WF_PAUSE, WF_READY_PAUSE):
        raise _Rejected(f"instance {inst.id} is {inst.state}; only a paused instance can be resumed", instance=inst.id)
    inst.state = WF_RUNNING
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING, reason="resumed"))
    dv = _version(state, inst)
    # Submit what became ready during the pause first, so that a resumed task ending at
    # once does not find the workflow complete before those are registered.
    _submit(state, inst, dv, dv.order, out)
    for ti in list(inst.tasks.values()):
        if ti.state == PAUSE:
            tdef = dv.task(ti.name)
            if isinstance(tdef, ShellTask):
                _dispatch(state, inst, ti, tdef, out)
            else:
                ti.state = RUNNING
                _task_changed(inst, ti, out, "resumed")
                _check_dependent(state, inst, ti, tdef, out)
    _maybe_finish(state, inst, out)


def _kill_task(state: State, cmd: c.KillTask, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    ti = inst.tasks.get(cmd.task)
    if ti is None:
        known = cmd.task in _version(state, inst).index
        why = "has not been submitted yet" if known else "does not exist in this workflow"
        raise _Rejected(f"task {cmd.task!r} of instance {inst.id} {why}; nothing to kill", inst.id, cmd.task)
    if ti.state in TASK_FINAL:
        raise _Rejected(
            f"task {cmd.task!r} of instance {inst.id} is already {ti.state}; nothing to kill", inst.id, cmd.task
        )
    _kill(state, inst, ti, "killed by user", out)
    _maybe_finish(state, inst, out)


def _report_target(state: State, cmd: Any) -> tuple[WorkflowInstance, TaskInstance]:
    inst = state.instances.get(cmd.instance)
    ti = None if inst is None else inst.tasks.get(cmd.task)
    if inst is None or ti is None:
        raise _Rejected(f"report for unknown task {cmd.task!r} of instance {cmd.instance!r}", cmd.instance, cmd.task)
    return inst, ti


def _ignore(inst: WorkflowInstance, ti: TaskInstance, cmd: Any, out: Out, reason: str) -> None:
    out.append(
        e.LateReportIgnored(instance=inst.id, task=ti.name, attempt=cmd.attempt, report=_TAGS[type(cmd)], reason=reason)
    )


def _stale(ti: TaskInstance, cmd: Any) -> str:
    """Why a report is about an attempt that no longer runs, or "" if it is current."""
    if cmd.attempt != ti.attempt:
        return f"attempt {cmd.attempt} is not the current attempt {ti.attempt}"
    if ti.state not in (DISPATCH, RUNNING) or ti.type != "SHELL":
        return f"task is {ti.state}"
    return ""


def _claim_attempt(state: State, cmd: c.ClaimAttempt, offset: int, out: Out) -> None:
    """A worker's claim of a dispatched attempt: the first claim of the current attempt wins."""
    if not cmd.worker:
        raise _Rejected("a claim must name its worker", cmd.instance, cmd.task)
    inst, ti = _report_target(state, cmd)
    stale = _stale(ti, cmd)
    if not stale and ti.state != DISPATCH:
        stale = f"task is {ti.state}"
    if stale:
        if ti.kill_pending and ti.worker is None and cmd.attempt == ti.attempt:
            # Killed before anyone claimed it: no worker ever got an AttemptClaimed for this
            # attempt, so no process exists and none ever will. The claim confirms the kill.
            _ignore(inst, ti, cmd, out, f"{stale}: killed before it was claimed, no process was started")
            _confirm_kill(inst, ti, cmd, -15, out)
            _maybe_finish(state, inst, out)
            return
        _ignore(inst, ti, cmd, out, stale)
        return
    if ti.worker is not None:
        _ignore(inst, ti, cmd, out, f"attempt {ti.attempt} already claimed by worker {ti.worker}")
        return
    ti.worker = cmd.worker
    tdef = _version(state, inst).task(ti.name)
    assert isinstance(tdef, ShellTask)
    out.append(
        e.AttemptClaimed(
            instance=inst.id,
            task=ti.name,
            attempt=ti.attempt,
            worker=cmd.worker,
            dispatch=_dispatch_effect(state, inst, ti, tdef),
        )
    )


def _task_started(state: State, cmd: c.TaskStarted | c.TaskAdopted, offset: int, out: Out) -> None:
    """A started report, or an adoption after a restart: the attempt's process runs with `pid`."""
    inst, ti = _report_target(state, cmd)
    adopted = isinstance(cmd, c.TaskAdopted)
    stale = _stale(ti, cmd) or ("duplicate start report" if ti.state == RUNNING and not adopted else "")
    if not stale and ti.state == DISPATCH and ti.worker is not None and cmd.worker != ti.worker:
        stale = f"attempt {ti.attempt} is claimed by worker {ti.worker}, not {cmd.worker or '(unnamed)'}"
    if stale:
        _ignore(inst, ti, cmd, out, stale)
        return
    ti.state = RUNNING
    ti.pid = cmd.pid
    ti.worker = cmd.worker
    _task_changed(inst, ti, out, "process adopted after a restart" if adopted else "")


def _confirm_kill(inst: WorkflowInstance, ti: TaskInstance, cmd: Any, exit_code: int, out: Out) -> bool:
    """A report of the process end for a killed attempt confirms the kill."""
    if ti.kill_pending and cmd.attempt == ti.attempt:
        ti.kill_pending = False
        ti.exit_code = exit_code
        out.append(e.KillConfirmed(instance=inst.id, task=ti.name, attempt=ti.attempt, exit_code=exit_code))
        return True
    return False


def _settled(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: Any, exit_code: int, out: Out) -> bool:
    """Handle a report of a process end that confirms a kill or no longer matters; True if it did."""
    if _confirm_kill(inst, ti, cmd, exit_code, out):
        _maybe_finish(state, inst, out)
        return True
    stale = _stale(ti, cmd)
    if stale:
        _ignore(inst, ti, cmd, out, stale)
        return True
    return False


def _task_finished(state: State, cmd: c.TaskFinished, offset: int, out: Out) -> None:
    inst, ti = _report_target(state, cmd)
    if _settled(state, inst, ti, cmd, cmd.exit_code, out):
        return
    ti.exit_code = cmd.exit_code
    if cmd.worker:
        ti.worker = cmd.worker
    if cmd.exit_code == 0:
        _finish_task(state, inst, ti, SUCCESS, out)
        return
    why = f"exit code {cmd.exit_code}" + (f": {cmd.detail}" if cmd.detail else "")
    _failed_attempt(state, inst, ti, why, out)


def _failed_attempt(state: State, inst: WorkflowInstance, ti: TaskInstance, why: str, out: Out) -> None:
    tdef = _version(state, inst).task(ti.name)
    assert isinstance(tdef, ShellTask)
    if ti.attempt > tdef.retry_times:
        _finish_task(state, inst, ti, FAILURE, out, why)
        return
    _cancel_timers(state, inst, ti.name, "attempt failed", out)
    ti.ended = state.now
    if inst.state != WF_RUNNING:
        ti.state = PAUSE
        _task_changed(inst, ti, out, f"{why}; retry held while the workflow pauses")
        _maybe_finish(state, inst, out)
        return
    ti.state = "DELAY_EXECUTION"
    _task_changed(inst, ti, out, f"{why}; retry {ti.attempt} of {tdef.retry_times}")
    if tdef.retry_interval > 0:
        _set_timer(state, inst, ti.name, RETRY, state.now + _ms(tdef.retry_interval), out)
    else:
        _dispatch(state, inst, ti, tdef, out)


def _task_lost(state: State, cmd: c.TaskLost, offset: int, out: Out) -> None:
    inst, ti = _report_target(state, cmd)
    if _settled(state, inst, ti, cmd, -9, out):
        return
    ti.state = NEED_FAULT_TOLERANCE
    _task_changed(inst, ti, out, cmd.reason)
    tdef = _version(state, inst).task(ti.name)
    assert isinstance(tdef, ShellTask)
    _cancel_timers(state, inst, ti.name, "attempt lost", out)
    if inst.state == WF_RUNNING:
        _dispatch(state, inst, ti, tdef, out)
    else:
        ti.state = PAUSE
        _task_changed(inst, ti, out, "fault-tolerant rerun held while the workflow pauses")
        _maybe_finish(state, inst, out)


def _heartbeat(state: State, cmd: c.Heartbeat, offset: int, out: Out) -> None:
    state.workers[cmd.worker] = cmd.at
    if cmd.timeout_ms > 0:
        state.worker_timeouts[cmd.worker] = cmd.timeout_ms
    else:
        state.worker_timeouts.pop(cmd.worker, None)


def _lost_workers(state: State, now: int, offset: int, out: Out) -> None:
    """Workers silent past their heartbeat timeout: their attempts are lost (like a TaskLost report)."""
    lost = [w for w, t in state.worker_timeouts.items() if state.workers.get(w, 0) + t <= now]
    for worker in sorted(lost):
        del state.worker_timeouts[worker]
        seen = state.workers.get(worker, 0)
        for inst in list(state.instances.values()):
            if inst.state in WF_FINAL:
                continue
            for ti in list(inst.tasks.values()):
                if ti.worker == worker and ti.type == "SHELL" and (ti.kill_pending or ti.state in (DISPATCH, RUNNING)):
                    report = c.TaskLost(at=now, instance=inst.id, task=ti.name, attempt=ti.attempt, worker=worker,
                                        reason=f"worker {worker} lost: no heartbeat since {seen}")
                    _task_lost(state, report, offset, out)


def _upstream_finished(state: State, cmd: c.UpstreamFinished, offset: int, out: Out) -> None:
    state.record_upstream(cmd.workflow, UpstreamRecord(cmd.instance, cmd.base_time, cmd.state, cmd.task_states))


def _check_due(state: State, cmd: c.CheckDue, offset: int, out: Out) -> None:
    if not 0 <= cmd.now <= MAX_TIME:
        raise _Rejected(f"now={cmd.now} is out of range (epoch milliseconds, years 1970 to 9999)")
    if cmd.now > state.now:
        state.now = cmd.now
    # One entry at a time: an entry's action (a FAILED timeout or a failed check under
    # failure strategy END) may kill tasks whose entries are due in this same tick, and
    # the kill must cancel them (rule 6.1) instead of letting them fire.
    queue, max_seq = state.queue, state.queue.seq
    while (fired := queue.pop_next(cmd.now, max_seq)) is not None:
        (instance_id, task, kind), due = fired
        inst = state.instances[instance_id]
        ti = inst.tasks[task]
        out.append(e.TimerFired(instance=instance_id, task=task, kind=kind, due=due))
        tdef = _version(state, inst).task(task)
        if kind == DEPENDENT_CHECK:
            assert isinstance(tdef, DependentTask)
            _check_dependent(state, inst, ti, tdef, out)
        elif kind == RETRY:
            assert isinstance(tdef, ShellTask)
            _dispatch(state, inst, ti, tdef, out)
        else:
            _timed_out(state, inst, ti, tdef, out)
    if state.worker_timeouts:
        _lost_workers(state, cmd.now, offset, out)


def _timed_out(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: TaskDef, out: Out) -> None:
    strategy = tdef.timeout_strategy
    out.append(e.TaskTimedOut(instance=inst.id, task=ti.name, attempt=ti.attempt, strategy=strategy))
    if strategy == "WARN":
        return
    # A timed-out attempt fails for good (no retry) and its process is killed.
    ti.kill_pending = True
    out.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason="timeout"))
    _finish_task(state, inst, ti, FAILURE, out, f"timed out after {tdef.timeout}s")


_HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {
    c.DefineWorkflow: _define,
    c.SetReleaseState: _release,
    c.StartWorkflow: _start,
    c.StopWorkflow: _stop,
    c.PauseWorkflow: _pause,
    c.ResumeWorkflow: _resume,
    c.KillTask: _kill_task,
    c.TaskStarted: _task_started,
    c.TaskFinished: _task_finished,
    c.TaskAdopted: _task_started,
    c.TaskLost: _task_lost,
    c.ClaimAttempt: _claim_attempt,
    c.Heartbeat: _heartbeat,
    c.CheckDue: _check_due,
    c.UpstreamFinished: _upstream_finished,
}

_TAGS: dict[type, str] = {cls: cls.__struct_config__.tag for cls in _HANDLERS}  # type: ignore[attr-defined]
