"""The workflow-level rules: which tasks start, how a task's end moves its workflow, kill,
stop, pause, resume and finish of an instance. Task-type specifics are the hooks of
`core/tasks/` (looked up in `tasks.base.TYPES`); command handlers live in `step.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from easysched_es.core import capacity, time_params, zones
from easysched_es.core import events as e
from easysched_es.core.definitions import TaskDef
from easysched_es.core.state import (
    DISPATCH,
    FAILURE,
    KILL,
    PAUSE,
    RUNNING,
    SKIPPED,
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
    WorkflowInstance,
)
from easysched_es.core.tasks.base import BY_DEFINITION, HOLDS_WORK, TYPES, Out, cancel_timers, task_changed, version

_FINISH_REASONS = {s: f"task {s}" for s in (SUCCESS, FAILURE, KILL)}


def instance_env(inst: WorkflowInstance, date_zone: str = "") -> dict[str, str]:
    """The environment every task of an instance gets: its parameters and system values.

    DS_DATE is the base date in `date_zone` (`start --timezone`), else in UTC; DS_TIME is the
    UTC instant either way.

    Computed once per instance; dispatches share it, so a dispatch allocates no new dict.
    """
    env = dict(inst.params)
    env["EASYSCHED_WORKFLOW"] = inst.workflow
    env["EASYSCHED_INSTANCE"] = inst.id
    ds_date, ds_time, system = _base_env(inst.base_time // 1000, inst.zone or "UTC")
    if date_zone and date_zone != "UTC":
        ds_date = datetime.fromtimestamp(inst.base_time // 1000, tz=zones.zone(date_zone)).date().isoformat()
    env["DS_DATE"] = ds_date
    env["DS_TIME"] = ds_time
    # DolphinScheduler's built-in time parameters, as shell-safe names (system_biz_date, ...).
    for name, value in system:
        env.setdefault(name, value)
    return env


@functools.lru_cache(maxsize=4096)
def _base_env(seconds: int, zone: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    # An instance start's time values depend on (second, zone) only; cached because every
    # start of the fold's hot path needs them and consecutive starts share a second.
    base = datetime.fromtimestamp(seconds, tz=UTC).isoformat()
    system = time_params.builtin(seconds * 1000, zone)
    return base[:10], base[:19] + "Z", tuple((time_params.env_name(k), v) for k, v in system.items())


def upstream_pool(tasks: dict[str, TaskInstance], upstream: list[str]) -> dict[str, str]:
    """The output parameters a task receives: its upstreams' pools, the first to end winning a name."""
    pools = []
    for at, name in enumerate(upstream):
        up = tasks[name]
        if up.inputs or up.outputs:
            pools.append((up.ended or 0, at, up))
    if not pools:
        return {}
    if len(pools) == 1:
        up = pools[0][2]
        return {**up.inputs, **up.outputs} if up.inputs else up.outputs
    merged: dict[str, str] = {}
    for _, _, up in sorted(pools, key=lambda p: p[:2]):
        for name, value in {**up.inputs, **up.outputs}.items():
            merged.setdefault(name, value)
    return merged


FINISHED: list[Callable[[State, WorkflowInstance, Out], None]] = []
"""Hooks called when an instance reaches a final state (schedules register one)."""
REOPENED: list[Callable[[State, WorkflowInstance], None]] = []
"""Hooks called when a rerun or recover makes a finished instance run again (core/recovery.py)."""


PAUSED: list[Callable[[State, WorkflowInstance, Out], None]] = []
"""Hooks called when an instance completes a pause (SUB_WORKFLOW registers one)."""


RESUMED: list[Callable[[State, WorkflowInstance, Out], None]] = []
"""Hooks called when an instance resumes (SUB_WORKFLOW registers one)."""


def start_instance(state: State, workflow: str, instance_id: str, params: dict[str, str], schedule_time: int | None,
                   zone: str, command_type: str, out: Out, parent: tuple[str, str] = ("", ""),
                   date_zone: str = "", only: dict[str, bool] | None = None,
                   window_zone: str = "", backfill: str = "") -> WorkflowInstance:
    """Start an instance of the newest version of an ONLINE workflow (checked by the caller).

    `only` names the tasks the instance runs (a start from a task, core/start_scope.py); their
    upstreams outside it are treated as absent from the DAG, as DolphinScheduler's sub-DAG.

    `params` override the definition's; `${...}`/`$[...]` in them are resolved at the base
    time in `zone` (raises time_params.TimeExprError before anything changes). DS_DATE is taken
    in `date_zone`, DEPENDENT date windows in `window_zone` (both "" = UTC).
    """
    dv = state.workflows[workflow].latest
    merged = dict(dv.definition.params)
    merged.update(params)
    base = schedule_time if schedule_time is not None else state.now
    merged, _ = time_params.instance_params(merged, base, zone or "UTC")
    inst = WorkflowInstance(
        id=instance_id,
        workflow=workflow,
        version=dv.version,
        state=WF_RUNNING,
        base_time=base,
        started=state.now,
        params=merged,
        schedule_time=schedule_time,
        tasks={},
        zone=zone,
        command_type=command_type,
        parent=parent[0],
        parent_task=parent[1],
        only=only or {},
        window_zone="" if window_zone == "UTC" else window_zone,
        backfill=backfill,
    )
    inst.env = instance_env(inst, date_zone)
    state.instances[inst.id] = inst
    state.record_upstream(workflow, UpstreamRecord(inst.id, base, WF_RUNNING, {}, scheduled=schedule_time is not None))
    out.append(
        e.WorkflowStarted(
            instance=inst.id,
            workflow=workflow,
            version=inst.version,
            base_time=base,
            schedule_time=schedule_time,
            params=merged,
            command_type=command_type,
            zone=zone,
            parent=parent[0],
            parent_task=parent[1],
            only=list(only or ()),
            backfill=backfill,
        )
    )
    if capacity.hold_instance(state, inst, out):
        return inst
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING))
    submit(state, inst, dv, inst.only or dv.roots, out)
    return inst


def failure_handled(dv: DefinitionVersion, name: str) -> bool:
    """A failure of task `name` is handled: a task right downstream of it runs after failures
    (CONDITIONS), so the failure neither triggers failure strategy END nor fails the workflow."""
    return any(BY_DEFINITION[type(dv.task(d))].after_failure for d in dv.downstream[name])


def finish_task(
    state: State,
    inst: WorkflowInstance,
    ti: TaskInstance,
    new_state: str,
    out: Out,
    reason: str = "",
    skip: list[str] | None = None,
    skip_reason: str = "",
) -> None:
    """Move a task to a final state and let the workflow react.

    `skip` names downstream tasks not to run (the branches a CONDITIONS or SWITCH task did not
    take): they become SKIPPED, with `skip_reason`, before anything downstream starts.
    """
    cancel_timers(state, inst, ti.name, _FINISH_REASONS.get(new_state) or f"task {new_state}", out)
    ti.state = new_state
    ti.ended = state.now
    task_changed(inst, ti, out, reason)
    dv = version(state, inst)
    if new_state in TASK_OK:
        submit(state, inst, dv, dv.downstream[ti.name], out, skip, skip_reason)
    elif new_state == FAILURE:
        if failure_handled(dv, ti.name):
            submit(state, inst, dv, dv.downstream[ti.name], out)
        elif dv.definition.failure_strategy == "END" and inst.state == WF_RUNNING:
            for other in list(inst.tasks.values()):
                if other.state not in TASK_FINAL:
                    kill(state, inst, other, f"failure strategy END after {ti.name} failed", out)
    maybe_finish(state, inst, out)


def kill(state: State, inst: WorkflowInstance, ti: TaskInstance, reason: str, out: Out) -> None:
    """Rule 6.1: the kill, the timer removal and the end of what the task runs are one step."""
    cancel_timers(state, inst, ti.name, "task killed", out)
    was = ti.state
    ti.state = KILL
    ti.ended = state.now
    ti.kill_pending = False
    task_changed(inst, ti, out, reason)
    TYPES[ti.type].after_kill(state, inst, ti, was, reason, out)


def submit(
    state: State,
    inst: WorkflowInstance,
    dv: DefinitionVersion,
    names: Iterable[str],
    out: Out,
    skip: list[str] | None = None,
    skip_reason: str = "",
) -> None:
    """Start every named task whose upstreams are done, if the instance is running.

    An upstream is done when it succeeded or was SKIPPED (any final state, for a task that
    runs after failures). A task all of whose upstreams were SKIPPED is SKIPPED too, and so
    on downstream (DolphinScheduler's rule), iteratively: a long skipped chain costs no stack.
    """
    if inst.state != WF_RUNNING:
        return
    tasks = inst.tasks
    task_defs, index = dv.definition.tasks, dv.index  # dv.task(name), inlined: the hot path
    only = inst.only  # a start from a task: the sub-DAG it runs ({} = every task)
    ready: list[tuple[TaskInstance, TaskDef]] = []
    todo: Iterable[str] = names
    if skip:
        todo = [*names]
        for name in skip:
            if name not in tasks:
                _mark_skipped(state, inst, dv, name, skip_reason, out)
                todo.extend(dv.downstream[name])
    # Register the whole batch (and every skip it implies) before starting any of it: a task
    # that ends at once (a DEPENDENT already satisfied or failed) must not let the workflow
    # finish while its siblings are still to start, and a kill by failure strategy END must
    # reach them.
    while True:
        skipped: list[str] = []
        for name in todo:
            if name in tasks or (only and name not in only):
                continue
            tdef = task_defs[index[name]]
            ups = tdef.upstream if not only else [u for u in tdef.upstream if u in only]
            n_skipped = 0
            for up in ups:
                upstream = tasks.get(up)
                if upstream is None:
                    break
                up_state = upstream.state
                if up_state in TASK_OK:
                    continue
                if up_state == SKIPPED:
                    n_skipped += 1
                elif up_state not in TASK_FINAL or not BY_DEFINITION[type(tdef)].after_failure:
                    break
            else:
                if n_skipped and n_skipped == len(ups):
                    why = f"all upstream tasks were skipped ({', '.join(ups)})"
                    _mark_skipped(state, inst, dv, name, why, out)
                    skipped.append(name)
                else:
                    ti = tasks[name] = TaskInstance(name=name, type=BY_DEFINITION[type(tdef)].name)
                    if ups:  # a root has no upstream pool ({}, the default)
                        ti.inputs = upstream_pool(tasks, ups)
                    if inst.attempts:  # a rerun or recover: the attempt numbers go on
                        ti.attempt = ti.attempt_base = inst.attempts.get(name, 0)
                    ready.append((ti, tdef))
        if not skipped:
            break
        todo = [d for name in skipped for d in dv.downstream[name]]
    for ti, tdef in ready:
        if ti.state == SUBMITTED and inst.state == WF_RUNNING:
            TYPES[ti.type].start(state, inst, ti, tdef, out)


def _mark_skipped(state: State, inst: WorkflowInstance, dv: DefinitionVersion, name: str, why: str,
                  out: Out) -> None:
    ti = TaskInstance(name=name, type=BY_DEFINITION[type(dv.task(name))].name, state=SKIPPED, note=why)
    ti.started = ti.ended = state.now
    inst.tasks[name] = ti
    task_changed(inst, ti, out, why)


def maybe_finish(state: State, inst: WorkflowInstance, out: Out) -> None:
    """End the instance (or complete its pause) once nothing in it is active any more."""
    wf = inst.state
    if wf in WF_FINAL or wf == WF_PAUSE:
        return
    tasks = inst.tasks.values()
    running = wf == WF_RUNNING
    # One pass (this runs after every task change): work still exists outside the step
    # (a process, a child), or, while running, any task is unfinished. Newest first: tasks
    # end roughly in the order they started, so in a wide fan-out the unfinished ones are at
    # the end, and this stops at once instead of walking every finished task (quadratic).
    for t in reversed(inst.tasks.values()):
        if t.kill_pending or (running and t.state not in TASK_FINAL):
            return
        if t.state in (DISPATCH, RUNNING) and t.type in HOLDS_WORK:
            return
    if wf == WF_READY_STOP:
        final = WF_STOP
    else:
        dv = version(state, inst)
        all_ok = len(inst.tasks) == len(inst.only or dv.order) and all(
            t.state in TASK_OK or t.state == SKIPPED or (t.state == FAILURE and failure_handled(dv, t.name))
            for t in tasks
        )
        if all_ok:
            final = WF_SUCCESS
        elif wf == WF_READY_PAUSE:
            inst.state = WF_PAUSE
            out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_PAUSE))
            for hook in PAUSED:
                hook(state, inst, out)
            return
        else:
            final = WF_FAILURE
    inst.state = final
    inst.ended = state.now
    task_states = state.shared_task_states({t.name: t.state for t in tasks})
    record = state.upstream[inst.workflow][inst.id]
    record.state = final
    record.task_states = task_states
    record.ended = state.now
    out.append(
        e.WorkflowFinished(
            instance=inst.id, workflow=inst.workflow, state=final, base_time=inst.base_time, task_states=task_states,
            scheduled=inst.schedule_time is not None,
        )
    )
    for hook in FINISHED:
        hook(state, inst, out)


def stop(state: State, inst: WorkflowInstance, out: Out) -> None:
    """STOP: the instance goes READY_STOP, every active task is killed, STOP once none is active."""
    inst.state = WF_READY_STOP
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_READY_STOP, reason="stop requested"))
    for ti in list(inst.tasks.values()):
        if ti.state not in TASK_FINAL:
            kill(state, inst, ti, "workflow stopped", out)
    maybe_finish(state, inst, out)


def pause(state: State, inst: WorkflowInstance, out: Out) -> None:
    """PAUSE: nothing new starts; each active task pauses as its type says; PAUSE once none runs."""
    inst.state = WF_READY_PAUSE
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_READY_PAUSE, reason="pause requested"))
    for ti in inst.tasks.values():
        if ti.state not in TASK_FINAL:
            TYPES[ti.type].pause(state, inst, ti, out)
    maybe_finish(state, inst, out)


def resume(state: State, inst: WorkflowInstance, out: Out) -> None:
    """RECOVER_SUSPENDED_PROCESS: continue a paused instance from where it stopped."""
    inst.state = WF_RUNNING
    out.append(e.WorkflowStateChanged(instance=inst.id, state=WF_RUNNING, reason="resumed"))
    dv = version(state, inst)
    # Submit what became ready during the pause first, so that a resumed task ending at
    # once does not find the workflow complete before those are registered.
    submit(state, inst, dv, dv.order, out)
    for ti in list(inst.tasks.values()):
        if ti.state == PAUSE:
            TYPES[ti.type].resume(state, inst, ti, dv.task(ti.name), out)
    for hook in RESUMED:
        hook(state, inst, out)
    maybe_finish(state, inst, out)
