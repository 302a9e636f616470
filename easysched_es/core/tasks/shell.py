"""SHELL: a script run by a worker as a subprocess; exit code 0 means SUCCESS.

The only worker task type. Its attempts are dispatched as `DispatchTask` effects, guarded
by retries and timeouts in the delay queue, and settled by the worker's reports. A killed
attempt's process is ended by a `KillTaskProcess` effect and the task stays `kill_pending`
until the worker confirms it is gone.
"""

from __future__ import annotations

from typing import Any

from easysched_es.core import alerts, capacity, fencing, outputs, time_params, workflow
from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import ShellTask
from easysched_es.core.delay_queue import RETRY
from easysched_es.core.delay_queue import TIMEOUT as TIMEOUT_KIND
from easysched_es.core.state import (
    DELAY,
    DISPATCH,
    FAILURE,
    NEED_FAULT_TOLERANCE,
    PAUSE,
    RUNNING,
    SUCCESS,
    WF_FINAL,
    WF_RUNNING,
    State,
    TaskInstance,
    WorkflowInstance,
)
from easysched_es.core.tasks.base import (
    Out,
    TaskType,
    cancel_timers,
    ignore_report,
    ms,
    set_timer,
    task_changed,
    version,
)


def dispatch_effect(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask) -> e.DispatchTask:
    """The effect that makes a worker run the task's current attempt."""
    return e.DispatchTask(
        instance=inst.id,
        task=ti.name,
        attempt=ti.attempt,
        task_type=ti.type,
        command=tdef.command,
        env={**inst.env, **ti.inputs} if ti.inputs else inst.env,
        # An empty env resolves to itself: no call on the hot path.
        task_env=time_params.resolve_values(tdef.env, inst.params, inst.base_time, inst.zone or "UTC")
        if tdef.env else tdef.env,
        worker_group=tdef.worker_group or version(state, inst).definition.worker_group,
    )


def _dispatch(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
    if capacity.admit(state, inst, ti, tdef, out):
        dispatch_admitted(state, inst, ti, tdef, out)


def dispatch_admitted(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
    """Dispatch the task's next attempt (its slots are taken: see core/capacity.py)."""
    ti.attempt += 1
    ti.state = DISPATCH
    ti.pid = None
    ti.worker = None
    ti.incarnation = 0
    ti.exit_code = None
    ti.started = state.now
    ti.ended = None
    task_changed(inst, ti, out)
    out.append(dispatch_effect(state, inst, ti, tdef))
    if tdef.timeout is not None:
        set_timer(state, inst, ti.name, TIMEOUT_KIND, state.now + ms(tdef.timeout), out)


def _shell_def(state: State, inst: WorkflowInstance, ti: TaskInstance) -> ShellTask:
    tdef = version(state, inst).task(ti.name)
    assert isinstance(tdef, ShellTask)
    return tdef


def _stale(ti: TaskInstance, cmd: Any) -> str:
    """Why a report is about an attempt that no longer runs, or "" if it is current."""
    if cmd.attempt != ti.attempt:
        return f"attempt {cmd.attempt} is not the current attempt {ti.attempt}"
    if ti.state not in (DISPATCH, RUNNING):
        return f"task is {ti.state}"
    return ""


def _confirm_kill(inst: WorkflowInstance, ti: TaskInstance, cmd: Any, exit_code: int, out: Out) -> bool:
    """A report of the process end for a killed attempt confirms the kill."""
    if ti.kill_pending and cmd.attempt == ti.attempt:
        ti.kill_pending = False
        ti.exit_code = exit_code
        out.append(e.KillConfirmed(instance=inst.id, task=ti.name, attempt=ti.attempt, exit_code=exit_code))
        return True
    return False


def _settled(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: Any, tag: str, exit_code: int,
             out: Out) -> bool:
    """Handle a report of a process end that confirms a kill or no longer matters; True if it did."""
    if _confirm_kill(inst, ti, cmd, exit_code, out):
        workflow.maybe_finish(state, inst, out)
        return True
    stale = _stale(ti, cmd)
    if stale:
        ignore_report(inst, ti, cmd, tag, out, stale)
        return True
    return False


def _claim(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: c.ClaimAttempt, tag: str, out: Out) -> None:
    """A worker's claim of a dispatched attempt: the first claim of the current attempt wins."""
    stale = _stale(ti, cmd)
    if not stale and ti.state != DISPATCH:
        stale = f"task is {ti.state}"
    if stale:
        if ti.kill_pending and ti.worker is None and cmd.attempt == ti.attempt:
            # Killed before anyone claimed it: no worker ever got an AttemptClaimed for this
            # attempt, so no process exists and none ever will. The claim confirms the kill.
            ignore_report(inst, ti, cmd, tag, out, f"{stale}: killed before it was claimed, no process was started")
            _confirm_kill(inst, ti, cmd, -15, out)
            workflow.maybe_finish(state, inst, out)
            return
        ignore_report(inst, ti, cmd, tag, out, stale)
        return
    if ti.worker is not None:
        ignore_report(inst, ti, cmd, tag, out, f"attempt {ti.attempt} already claimed by worker {ti.worker}")
        return
    ti.worker = cmd.worker
    fencing.take_over(state, ti, cmd)
    out.append(
        e.AttemptClaimed(
            instance=inst.id,
            task=ti.name,
            attempt=ti.attempt,
            worker=cmd.worker,
            dispatch=dispatch_effect(state, inst, ti, _shell_def(state, inst, ti)),
            incarnation=cmd.incarnation,
        )
    )


def _started(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: c.TaskStarted | c.TaskAdopted, tag: str,
             out: Out) -> None:
    """A started report, or an adoption after a restart: the attempt's process runs with `pid`."""
    adopted = isinstance(cmd, c.TaskAdopted)
    stale = _stale(ti, cmd) or ("duplicate start report" if ti.state == RUNNING and not adopted else "")
    if not stale and ti.state == DISPATCH and ti.worker is not None and cmd.worker != ti.worker:
        stale = f"attempt {ti.attempt} is claimed by worker {ti.worker}, not {cmd.worker or '(unnamed)'}"
    if stale:
        ignore_report(inst, ti, cmd, tag, out, stale)
        return
    ti.state = RUNNING
    ti.pid = cmd.pid
    ti.worker = cmd.worker
    fencing.take_over(state, ti, cmd)
    task_changed(inst, ti, out, "process adopted after a restart" if adopted else "")


def _finished(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: c.TaskFinished, tag: str,
              out: Out) -> None:
    if _settled(state, inst, ti, cmd, tag, cmd.exit_code, out):
        return
    ti.exit_code = cmd.exit_code
    if cmd.worker:
        ti.worker = cmd.worker
    if cmd.exit_code == 0:
        refused = outputs.problem(cmd.outputs) if cmd.outputs else ""
        if not refused:
            ti.outputs = cmd.outputs
            workflow.finish_task(state, inst, ti, SUCCESS, out)
            return
        why = f"exit code 0, but {refused}"
    else:
        why = f"exit code {cmd.exit_code}" + (f": {cmd.detail}" if cmd.detail else "")
    _failed_attempt(state, inst, ti, why, out)


def _failed_attempt(state: State, inst: WorkflowInstance, ti: TaskInstance, why: str, out: Out) -> None:
    tdef = _shell_def(state, inst, ti)
    if ti.attempt - ti.attempt_base > tdef.retry_times:
        workflow.finish_task(state, inst, ti, FAILURE, out, why)
        return
    cancel_timers(state, inst, ti.name, "attempt failed", out)
    ti.ended = state.now
    if inst.state != WF_RUNNING:
        ti.state = PAUSE
        task_changed(inst, ti, out, f"{why}; retry held while the workflow pauses")
        workflow.maybe_finish(state, inst, out)
        return
    ti.state = DELAY
    task_changed(inst, ti, out, f"{why}; retry {ti.attempt - ti.attempt_base} of {tdef.retry_times}")
    if tdef.retry_interval > 0:
        set_timer(state, inst, ti.name, RETRY, state.now + ms(tdef.retry_interval), out)
    else:
        _dispatch(state, inst, ti, tdef, out)


def _lost(state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: c.TaskLost, tag: str, out: Out) -> None:
    if _settled(state, inst, ti, cmd, tag, -9, out):
        return
    ti.state = NEED_FAULT_TOLERANCE
    task_changed(inst, ti, out, cmd.reason)
    tdef = _shell_def(state, inst, ti)
    cancel_timers(state, inst, ti.name, "attempt lost", out)
    if inst.state == WF_RUNNING:
        _dispatch(state, inst, ti, tdef, out)
    else:
        ti.state = PAUSE
        task_changed(inst, ti, out, "fault-tolerant rerun held while the workflow pauses")
        workflow.maybe_finish(state, inst, out)


def _timed_out(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
    strategy = tdef.timeout_strategy
    out.append(e.TaskTimedOut(instance=inst.id, task=ti.name, attempt=ti.attempt, strategy=strategy))
    if strategy in ("WARN", "WARNFAILED"):
        alerts.raise_alert(state, inst, "TIMEOUT_WARN", f"task {ti.name} attempt {ti.attempt} ran past its timeout of "
                           f"{tdef.timeout}s", out, where=f"{ti.name}.{ti.attempt}")
    if strategy == "WARN":
        return
    # A timed-out attempt fails for good (no retry) and its process is killed.
    ti.kill_pending = True
    out.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason="timeout"))
    workflow.finish_task(state, inst, ti, FAILURE, out, f"timed out after {tdef.timeout}s")


_REPORTS: dict[type, Any] = {
    c.TaskStarted: _started,
    c.TaskAdopted: _started,
    c.TaskFinished: _finished,
    c.TaskLost: _lost,
    c.ClaimAttempt: _claim,
}


class Shell(TaskType):
    """The SHELL task type."""

    name = "SHELL"
    definition = ShellTask
    holds_work = True

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
        _dispatch(state, inst, ti, tdef, out)

    def on_timer(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, kind: str,
                 out: Out) -> None:
        if kind == RETRY:
            _dispatch(state, inst, ti, tdef, out)
        else:
            _timed_out(state, inst, ti, tdef, out)

    def report(self, state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: Any, tag: str, out: Out) -> None:
        refused = fencing.report_refused(state, ti, cmd)
        if refused:
            ignore_report(inst, ti, cmd, tag, out, refused)
            return
        _REPORTS[type(cmd)](state, inst, ti, cmd, tag, out)

    def after_kill(self, state: State, inst: WorkflowInstance, ti: TaskInstance, was: str, reason: str,
                   out: Out) -> None:
        capacity.forget(state, inst, ti)
        if was in (DISPATCH, RUNNING):
            ti.kill_pending = True
            out.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason=reason))

    def pause(self, state: State, inst: WorkflowInstance, ti: TaskInstance, out: Out) -> None:
        # A dispatched attempt runs to its end; a retry wait stops here.
        if ti.state not in (DISPATCH, RUNNING):
            capacity.forget(state, inst, ti)
            super().pause(state, inst, ti, out)

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ShellTask, out: Out) -> None:
        _dispatch(state, inst, ti, tdef, out)

    def pending_effects(self, state: State, inst: WorkflowInstance, ti: TaskInstance) -> list[e.Event]:
        if ti.kill_pending:
            why = "kill not yet confirmed"
            return [e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt, reason=why)]
        if ti.state in (DISPATCH, RUNNING):
            return [dispatch_effect(state, inst, ti, _shell_def(state, inst, ti))]
        return []


def lost_workers(state: State, now: int, out: Out) -> None:
    """Workers silent past their heartbeat timeout: their attempts are lost (like a TaskLost report)."""
    lost = [w for w, t in state.worker_timeouts.items() if state.workers.get(w, 0) + t <= now]
    for worker in sorted(lost):
        del state.worker_timeouts[worker]
        state.capacity.worker_lost(worker)
        seen = state.workers.get(worker, 0)
        fencing.declare_lost(state, worker, seen, out)
        for inst in list(state.instances.values()):
            if inst.state in WF_FINAL:
                continue
            for ti in list(inst.tasks.values()):
                if ti.worker == worker and ti.type == "SHELL" and (ti.kill_pending or ti.state in (DISPATCH, RUNNING)):
                    report = c.TaskLost(at=now, instance=inst.id, task=ti.name, attempt=ti.attempt, worker=worker,
                                        reason=f"worker {worker} lost: no heartbeat since {seen}")
                    alerts.raise_alert(state, inst, "WORKER_LOST", f"{report.reason}; task {ti.name} attempt "
                                       f"{ti.attempt} is rerun", out, where=f"{ti.name}.{ti.attempt}")
                    _lost(state, inst, ti, report, "task_lost", out)


def worker_duties(state: State, worker: str, group: str) -> tuple[list[e.DispatchTask], list[e.KillTaskProcess],
                                                                   list[e.DispatchTask]]:
    """What a (re)starting worker owes the state: (attempts claimed by `worker` to run or adopt, kills of
    its attempts not yet confirmed, dispatched attempts of its `group` nobody claimed yet).

    A restarted Kafka worker reconciles from this, for every partition, instead of re-reading the
    effects of a stretch of the events log.
    """
    runs: list[e.DispatchTask] = []
    kills: list[e.KillTaskProcess] = []
    unclaimed: list[e.DispatchTask] = []
    for inst in state.instances.values():
        if inst.state in WF_FINAL:
            continue
        for ti in inst.tasks.values():
            if ti.type != "SHELL":
                continue
            if ti.kill_pending:
                if ti.worker == worker:
                    kills.append(e.KillTaskProcess(instance=inst.id, task=ti.name, attempt=ti.attempt,
                                                   reason="kill not yet confirmed"))
            elif ti.state in (DISPATCH, RUNNING):
                dispatch = dispatch_effect(state, inst, ti, _shell_def(state, inst, ti))
                if ti.worker == worker:
                    runs.append(dispatch)
                elif ti.worker is None and ti.state == DISPATCH and dispatch.worker_group == group:
                    unclaimed.append(dispatch)
    return runs, kills, unclaimed
