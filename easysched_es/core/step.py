"""`step(state, command, offset) -> (state, events)`: the only place the scheduler's state changes.

Pure and deterministic: no clock (time comes from the command's `at` and `CheckDue.now`),
no I/O, no randomness. A command that cannot apply changes nothing and yields one
`CommandRejected` naming the reason.

This module holds the command handlers: each validates its command, then applies it
through the workflow-level rules (`workflow.py`: submit, finish, kill, stop, pause, resume;
DESIGN.md section 6 lives there) and the task types' hooks (`tasks/`, one module per type,
registered in `tasks/registry.py`). Worker reports go to the hooks of the task's type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from easysched_es.core import (
    alerts,
    backfill,
    capacity,
    fencing,
    limits,
    recovery,
    requests,
    retention,
    schedules,
    spawn_rules,
    start_scope,
    time_params,
    workflow,
    zones,
)
from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_command
from easysched_es.core.definitions import DefinitionError, validate
from easysched_es.core.state import (
    TASK_FINAL,
    WF_FINAL,
    WF_PAUSE,
    WF_READY_PAUSE,
    WF_READY_STOP,
    WF_RUNNING,
    State,
    TaskInstance,
    UpstreamRecord,
    WorkflowEntry,
    WorkflowInstance,
    compile_definition,
)
from easysched_es.core.tasks import registry as _registry  # noqa: F401  (registers the task types)
from easysched_es.core.tasks import shell
from easysched_es.core.tasks.base import TYPES, Out, type_of, version

# Times are epoch milliseconds up to 9999-12-31T23:59:59.999Z: a command stamped later (or
# before 1970) is rejected, so that date maths and timer arithmetic cannot fail in the fold.
MAX_TIME = 253_402_300_799_999


class SequenceError(Exception):
    """A command was applied out of log order (a gap backwards or a repeat)."""


class CommandFailed(Exception):
    """Applying a decoded command raised: a bug, not a property of the input.

    The state may be half-changed, so the partition must stop at `offset` (the caller
    discards the state) until an operator appends a `skip` of it (see `SkipCommand`).
    """

    def __init__(self, offset: int, command: str, error: str) -> None:
        super().__init__(f"applying the {command!r} command at offset {offset} raised {error}")
        self.offset, self.command, self.error = offset, command, error


class Skip(msgspec.Struct, frozen=True):
    """The fold's instruction to pass over one command: the skip's offset, reason, and the error seen."""

    skip_offset: int
    reason: str
    error: str = ""


class _Rejected(Exception):
    def __init__(self, reason: str, instance: str = "", task: str = "") -> None:
        super().__init__(reason)
        self.reason, self.instance, self.task = reason, instance, task


def step(state: State, command: c.Command, offset: int) -> tuple[State, list[e.Event]]:
    """Apply one command at log `offset`; return the state (mutated in place) and the events."""
    if offset <= state.last_offset:
        raise SequenceError(f"offset {offset} does not follow the last applied offset {state.last_offset}")
    state.last_offset = offset
    if command.request_id:
        return state, _requested(state, command, offset)
    return state, _decide(state, command, offset)


def _requested(state: State, command: c.Command, offset: int) -> list[e.Event]:
    """A command with a client request id: a repeat gets the first decision, a new one is decided."""
    tag = _TAGS[type(command)]
    bad = requests.check(command)
    if bad is not None:
        return [e.CommandRejected(command=tag, reason=bad)]
    first = requests.repeat(state.requests, command, tag)
    if first is not None:
        return [first]
    out = _decide(state, command, offset)
    requests.remember(state.requests, command, tag, offset, out, state.now)
    return out


def _decide(state: State, command: c.Command, offset: int) -> list[e.Event]:
    out: Out = []
    try:
        if not 0 <= command.at <= MAX_TIME:
            raise _Rejected(f"at={command.at} is out of range (epoch milliseconds, years 1970 to 9999)")
        if command.at > state.now:
            state.now = command.at
        _HANDLERS[type(command)](state, command, offset, out)
        cap = state.capacity
        if cap.serial or cap.waiting_count():  # drain's own guard, without the call on the hot path
            capacity.drain(state, out)
    except _Rejected as r:
        # Handlers validate before they mutate, so a rejection leaves the state untouched.
        out = [e.CommandRejected(command=_TAGS[type(command)], reason=r.reason, instance=r.instance, task=r.task)]
    except (schedules.ScheduleError, capacity.CapacityError, recovery.RecoveryError, backfill.BackfillError) as r:
        out = [e.CommandRejected(command=_TAGS[type(command)], reason=str(r))]
    return out


def step_record(
    state: State, payload: bytes, offset: int, skip: Skip | None = None
) -> tuple[State, list[e.Event], str]:
    """Decode and apply one log record; a record that does not decode is rejected, not fatal.

    Returns the state, the events and the command's type tag ("?" when it did not decode).
    With `skip`, the command is passed over (an operator's `skip` of it is later in the log).
    Raises CommandFailed when applying the decoded command raises.
    """
    try:
        command = decode_command(payload)
    except msgspec.DecodeError as exc:  # RecordError included: anything that does not decode
        return reject_record(state, offset, f"malformed command record: {exc}")
    tag = _TAGS[type(command)]
    if skip is not None:
        if offset <= state.last_offset:
            raise SequenceError(f"offset {offset} does not follow the last applied offset {state.last_offset}")
        state.last_offset = offset
        state.skipped[offset] = skip.skip_offset
        skipped = e.CommandSkipped(
            command=tag, reason=skip.reason, error=skip.error, skip_offset=skip.skip_offset,
            instance=str(getattr(command, "instance", "")), task=str(getattr(command, "task", "")),
        )
        return state, [skipped], tag
    try:
        state, out = step(state, command, offset)
    except SequenceError:
        raise
    except Exception as exc:  # a bug: the caller stops the partition here
        raise CommandFailed(offset, tag, f"{type(exc).__name__}: {exc}"[:1000]) from exc
    return state, out, tag


def skip_target(command: c.Command) -> int | None:
    """The offset a command validly skips (a `skip` with a reason and a sane time), else None."""
    if isinstance(command, c.SkipCommand) and command.reason.strip() and 0 <= command.at <= MAX_TIME:
        return command.offset
    return None


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
            out.extend(TYPES[ti.type].pending_effects(state, inst, ti))
    out.extend(alerts.pending_effects(state))
    return out


# ---- command handlers ------------------------------------------------------------------


def _define(state: State, cmd: c.DefineWorkflow, offset: int, out: Out) -> None:
    try:
        validate(cmd.definition)
    except DefinitionError as exc:
        raise _Rejected(str(exc)) from None
    for tdef in cmd.definition.tasks:
        problem = type_of(tdef).check_define(state, cmd.definition, tdef)
        if problem:
            raise _Rejected(f"workflow {cmd.definition.name!r}, task {tdef.name!r}: {problem}")
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
    schedules.on_release(state, cmd.workflow, cmd.online, out)


def _start(state: State, cmd: c.StartWorkflow, offset: int, out: Out) -> None:
    entry = state.workflows.get(cmd.workflow)
    if entry is None:
        raise _Rejected(f"unknown workflow {cmd.workflow!r}: define it first (easysched define FILE)")
    if not entry.online:
        raise _Rejected(f"workflow {cmd.workflow!r} is OFFLINE: release it before starting it")
    if cmd.schedule_time is not None and not 0 <= cmd.schedule_time <= MAX_TIME:
        raise _Rejected(f"schedule_time={cmd.schedule_time} is out of range (epoch milliseconds, years 1970 to 9999)")
    if problem := spawn_rules.env_problem("parameter", cmd.params) or limits.start_problem(
            entry.latest.definition, cmd.params):
        raise _Rejected(problem)
    only = start_scope.select(entry.latest, cmd.from_tasks, cmd.scope) if cmd.from_tasks else None
    if isinstance(only, str):
        raise _Rejected(f"--from-task: {only}")
    zone = cmd.timezone or schedules.zone_of(state, cmd.workflow)
    if cmd.timezone:
        try:
            zones.zone(cmd.timezone)
        except zones.ZoneError as exc:
            raise _Rejected(f"timezone: {exc}") from None
    try:
        workflow.start_instance(state, cmd.workflow, f"{state.partition}-{offset}", cmd.params, cmd.schedule_time,
                                zone, "", out, date_zone=cmd.timezone, only=only,
                                window_zone=cmd.timezone)
    except time_params.TimeExprError as exc:
        raise _Rejected(f"parameter: {exc}") from None


def _stop(state: State, cmd: c.StopWorkflow, offset: int, out: Out) -> None:
    if backfill.is_backfill(cmd.instance):  # a backfill and every instance it started
        backfill.stop(state, cmd.instance, out)
        return
    inst = _instance(state, cmd.instance)
    if inst.state in WF_FINAL or inst.state == WF_READY_STOP:
        raise _Rejected(f"instance {inst.id} is already {inst.state}; nothing to stop", instance=inst.id)
    workflow.stop(state, inst, out)


def _pause(state: State, cmd: c.PauseWorkflow, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    if inst.state != WF_RUNNING:
        raise _Rejected(f"instance {inst.id} is {inst.state}; only a running instance can be paused", instance=inst.id)
    workflow.pause(state, inst, out)


def _resume(state: State, cmd: c.ResumeWorkflow, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    if inst.state not in (WF_PAUSE, WF_READY_PAUSE):
        raise _Rejected(f"instance {inst.id} is {inst.state}; only a paused instance can be resumed", instance=inst.id)
    parent = state.instances.get(inst.parent) if inst.parent else None
    if parent is not None and parent.state in (WF_PAUSE, WF_READY_PAUSE):
        # The parent's pause holds its SUB_WORKFLOW task paused: resuming the child alone would
        # leave that task PAUSE over a running child. The parent's resume resumes the child.
        raise _Rejected(
            f"instance {inst.id} is a sub-workflow of {parent.id}, which is {parent.state}; resume {parent.id} instead",
            instance=inst.id,
        )
    workflow.resume(state, inst, out)


def _kill_task(state: State, cmd: c.KillTask, offset: int, out: Out) -> None:
    inst = _instance(state, cmd.instance)
    ti = inst.tasks.get(cmd.task)
    if ti is None:
        known = cmd.task in version(state, inst).index
        why = "has not been submitted yet" if known else "does not exist in this workflow"
        raise _Rejected(f"task {cmd.task!r} of instance {inst.id} {why}; nothing to kill", inst.id, cmd.task)
    if ti.state in TASK_FINAL:
        raise _Rejected(
            f"task {cmd.task!r} of instance {inst.id} is already {ti.state}; nothing to kill", inst.id, cmd.task
        )
    workflow.kill(state, inst, ti, "killed by user", out)
    workflow.maybe_finish(state, inst, out)


def _report_target(state: State, cmd: Any) -> tuple[WorkflowInstance, TaskInstance]:
    inst = state.instances.get(cmd.instance)
    ti = None if inst is None else inst.tasks.get(cmd.task)
    if inst is None or ti is None:
        raise _Rejected(f"report for unknown task {cmd.task!r} of instance {cmd.instance!r}", cmd.instance, cmd.task)
    return inst, ti


def _report(state: State, cmd: Any, offset: int, out: Out) -> None:
    """A worker's report (started, adopted, finished, lost, claim): its task's type decides."""
    inst, ti = _report_target(state, cmd)
    TYPES[ti.type].report(state, inst, ti, cmd, _TAGS[type(cmd)], out)


def _claim_attempt(state: State, cmd: c.ClaimAttempt, offset: int, out: Out) -> None:
    if not cmd.worker:
        raise _Rejected("a claim must name its worker", cmd.instance, cmd.task)
    _report(state, cmd, offset, out)


def _heartbeat(state: State, cmd: c.Heartbeat, offset: int, out: Out) -> None:
    refused = fencing.heartbeat_refused(state, cmd.worker, cmd.incarnation) or capacity.announce(
        state, cmd.worker, cmd.group, cmd.slots)
    if refused:
        raise _Rejected(refused)
    fencing.heard(state, cmd.worker, cmd.incarnation)
    state.workers[cmd.worker] = cmd.at
    if cmd.timeout_ms > 0:
        state.worker_timeouts[cmd.worker] = cmd.timeout_ms
    else:
        state.worker_timeouts.pop(cmd.worker, None)


def _skip(state: State, cmd: c.SkipCommand, offset: int, out: Out) -> None:
    if skip_target(cmd) is None:
        raise _Rejected("a skip needs a reason (--reason): it stays in the log for the record")
    if state.skipped.get(cmd.offset) != offset:
        raise _Rejected(
            f"offset {cmd.offset} is not a command the partition stopped on (or an earlier skip passed over it); "
            "nothing to skip"
        )
    del state.skipped[cmd.offset]
    out.append(e.SkipRecorded(offset=cmd.offset, reason=cmd.reason))


def _upstream_finished(state: State, cmd: c.UpstreamFinished, offset: int, out: Out) -> None:
    state.record_upstream(cmd.workflow, UpstreamRecord(cmd.instance, cmd.base_time, cmd.state, cmd.task_states,
                                                       ended=cmd.ended or cmd.at, scheduled=cmd.scheduled))


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
        if kind == schedules.SCHEDULE:
            schedules.on_due(state, task, due, cmd.now, offset, out)
            continue
        if kind == alerts.ALERT_RETRY:
            alerts.on_due(state, instance_id, task, due, out)
            continue
        inst = state.instances[instance_id]
        ti = inst.tasks[task]
        out.append(e.TimerFired(instance=instance_id, task=task, kind=kind, due=due))
        TYPES[ti.type].on_timer(state, inst, ti, version(state, inst).task(task), kind, out)
    if state.worker_timeouts:
        shell.lost_workers(state, cmd.now, out)


_HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {
    c.DefineWorkflow: _define,
    c.SetReleaseState: _release,
    c.StartWorkflow: _start,
    c.StopWorkflow: _stop,
    c.PauseWorkflow: _pause,
    c.ResumeWorkflow: _resume,
    c.KillTask: _kill_task,
    c.TaskStarted: _report,
    c.TaskFinished: _report,
    c.TaskAdopted: _report,
    c.TaskLost: _report,
    c.ClaimAttempt: _claim_attempt,
    c.Heartbeat: _heartbeat,
    c.CheckDue: _check_due,
    c.UpstreamFinished: _upstream_finished,
    c.SkipCommand: _skip,
    **schedules.HANDLERS,
    **capacity.HANDLERS,
    **alerts.HANDLERS,
    **retention.HANDLERS,
    **recovery.HANDLERS,
    **backfill.HANDLERS,
}

_TAGS: dict[type, str] = {cls: cls.__struct_config__.tag for cls in _HANDLERS}  # type: ignore[attr-defined]
