"""The interface between the fold and a task type, and the primitives every type uses.

A task type is a `TaskType` subclass in its own module under `core/tasks/`, registered by
one line in `core/tasks/registry.py`. The workflow-level rules (`core/workflow.py`) call
its hooks; a hook changes the task and appends the events it decides to `out`:

- `start`: the task's upstreams are done and the instance runs; begin the task.
- `on_timer`: a delay-queue entry of the task fired (`kind` says which).
- `report`: a worker's report (started, finished, lost, claim) about the task.
- `after_kill`: the task was just made KILL (its timers are already gone); stop what it
  still runs and set `kill_pending` while that is not confirmed. A stop of the workflow
  is a kill of every active task, so this is also the stop hook.
- `pause` / `resume`: the workflow pauses (the task is not final) or resumes (the task is PAUSE).
- `pending_effects`: after a restart, the effects still owed for the task.

This module imports no task type and no workflow rule, so that the rules and the types can
call each other without an import cycle: `TYPES` is filled by `registry.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from easysched_es.core import events as e
from easysched_es.core.definitions import TaskDef, WorkflowDefinition
from easysched_es.core.state import PAUSE, DefinitionVersion, State, TaskInstance, WorkflowInstance

Out = list[e.Event]


def version(state: State, inst: WorkflowInstance) -> DefinitionVersion:
    """The definition version an instance runs."""
    return state.workflows[inst.workflow].versions[inst.version - 1]


def ms(seconds: float) -> int:
    """Definition seconds to the core's integer milliseconds."""
    return round(seconds * 1000)


def set_timer(state: State, inst: WorkflowInstance, task: str, kind: str, due: int, out: Out) -> None:
    """Add (or move) the task's delay-queue entry of `kind`."""
    state.queue.set((inst.id, task, kind), due)
    out.append(e.TimerSet(instance=inst.id, task=task, kind=kind, due=due))


def cancel_timers(state: State, inst: WorkflowInstance, task: str, reason: str, out: Out) -> None:
    """Remove every delay-queue entry of the task (rule 6.1)."""
    for kind in state.queue.cancel_task(inst.id, task):
        out.append(e.TimerCancelled(instance=inst.id, task=task, kind=kind, reason=reason))


def task_changed(inst: WorkflowInstance, ti: TaskInstance, out: Out, reason: str = "") -> None:
    """Record the task's current state as a `TaskStateChanged` fact."""
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
            outputs=ti.outputs,
        )
    )


def ignore_report(inst: WorkflowInstance, ti: TaskInstance, cmd: Any, tag: str, out: Out, reason: str) -> None:
    """Record a worker report that changes nothing."""
    out.append(e.LateReportIgnored(instance=inst.id, task=ti.name, attempt=cmd.attempt, report=tag, reason=reason))


class TaskType:
    """How one task type behaves in the fold. The defaults suit a logic task (runs in the master)."""

    name: ClassVar[str]
    """The DolphinScheduler type name (the definition's `type` tag, `TaskInstance.type`)."""
    definition: ClassVar[type]
    """The definition struct of the type (a member of `definitions.TaskDef`)."""
    after_failure: ClassVar[bool] = False
    """The task starts once its upstreams are final, whatever their state (CONDITIONS): a
    failure upstream of it is handled, so it neither ends the workflow nor fails it."""
    holds_work: ClassVar[bool] = False
    """While DISPATCH or RUNNING, something outside the fold's step still runs (a process, a
    child workflow): a pausing or stopping workflow waits for it."""

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: Any, out: Out) -> None:
        """Begin the task (it is SUBMITTED_SUCCESS and the instance runs)."""
        raise NotImplementedError

    def on_timer(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: Any, kind: str,
                 out: Out) -> None:
        """A delay-queue entry of the task fired (already out of the queue)."""
        raise NotImplementedError(f"{self.name} sets no timers, yet {kind} fired")

    def report(self, state: State, inst: WorkflowInstance, ti: TaskInstance, cmd: Any, tag: str, out: Out) -> None:
        """A worker report about the task; logic tasks have no worker, so it is ignored."""
        if cmd.attempt != ti.attempt:
            reason = f"attempt {cmd.attempt} is not the current attempt {ti.attempt}"
        else:
            reason = f"task is {ti.state}"
        ignore_report(inst, ti, cmd, tag, out, reason)

    def after_kill(self, state: State, inst: WorkflowInstance, ti: TaskInstance, was: str, reason: str,
                   out: Out) -> None:
        """The task is KILL now (it was `was`); a logic task has nothing left running."""

    def pause(self, state: State, inst: WorkflowInstance, ti: TaskInstance, out: Out) -> None:
        """The workflow pauses: a logic task stops where it is (its timers go)."""
        cancel_timers(state, inst, ti.name, "workflow paused", out)
        ti.state = PAUSE
        task_changed(inst, ti, out, "workflow paused")

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: Any, out: Out) -> None:
        """The workflow resumes and the task is PAUSE."""
        raise NotImplementedError

    def check_define(self, state: State, definition: WorkflowDefinition, tdef: Any) -> str:
        """At define, what makes the task impossible given the state (other workflows), or ""."""
        return ""

    def pending_effects(self, state: State, inst: WorkflowInstance, ti: TaskInstance) -> list[e.Event]:
        """The effects the runtime must (re)apply for the task after a restart."""
        return []


TYPES: dict[str, TaskType] = {}
"""Task types by name (filled by `registry.py`)."""
BY_DEFINITION: dict[type, TaskType] = {}
"""Task types by definition struct class."""
HOLDS_WORK: set[str] = set()
"""Names of the types whose DISPATCH/RUNNING tasks hold work outside the step."""


def register(kind: TaskType) -> None:
    """Make a task type known to the fold."""
    TYPES[kind.name] = kind
    BY_DEFINITION[kind.definition] = kind
    if kind.holds_work:
        HOLDS_WORK.add(kind.name)


def type_of(tdef: TaskDef) -> TaskType:
    """The registered type of a task definition."""
    return BY_DEFINITION[type(tdef)]
