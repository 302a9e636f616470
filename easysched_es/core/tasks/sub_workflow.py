"""SUB_WORKFLOW: run an instance of another workflow in the same step; end with its final state.

The child is an ordinary instance in the same state (so the same partition on Kafka), with
`parent`/`parent_task` naming this task; its id is `<partition>-<offset>.<n>` of the command
that started it. Parameters are passed down explicitly (`sub_workflow.params`, where
`${name}` is a parameter of the parent or an output parameter the task received), and the
child's output parameters come up as the task's outputs when it succeeds.

Stop, pause and resume reach the child, recursively (the child's own SUB_WORKFLOW tasks
pass them on): a kill of this task (a stop of the parent is one) stops the child and keeps
the task `kill_pending` until the child is STOP, so the parent is STOP only once its whole
tree is. A pause pauses the child; the task is PAUSE once the child is, and the parent
waits for it (`holds_work`). A workflow that contains itself, directly or through others,
is refused at define with the cycle named.
"""

from __future__ import annotations

import re

from easysched_es.core import events as e
from easysched_es.core import outputs, workflow
from easysched_es.core.definitions import SubWorkflowTask, WorkflowDefinition
from easysched_es.core.state import (
    FAILURE,
    KILL,
    PAUSE,
    RUNNING,
    SUCCESS,
    WF_FINAL,
    WF_PAUSE,
    WF_READY_PAUSE,
    WF_READY_STOP,
    WF_RUNNING,
    WF_STOP,
    WF_SUCCESS,
    State,
    TaskInstance,
    WorkflowInstance,
)
from easysched_es.core.tasks.base import Out, TaskType, task_changed

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _child_id(state: State) -> str:
    n = 1
    while f"{state.partition}-{state.last_offset}.{n}" in state.instances:
        n += 1
    return f"{state.partition}-{state.last_offset}.{n}"


def _child_params(inst: WorkflowInstance, ti: TaskInstance, tdef: SubWorkflowTask) -> tuple[dict[str, str], str]:
    values = {**inst.params, **ti.inputs}
    params: dict[str, str] = {}
    for key, text in tdef.sub_workflow.params.items():
        for name in _REF.findall(text):
            if name not in values:
                return {}, (f"sub_workflow.params.{key}: unknown name ${{{name}}}: not a parameter of "
                            f"{inst.workflow!r} nor an output parameter of an upstream task")
        params[key] = _REF.sub(lambda m: values[m.group(1)], text)
    return params, ""


def _child_outputs(child: WorkflowInstance) -> dict[str, str]:
    """What the child hands up: its tasks' output parameters, a later-ending task winning a name."""
    merged: dict[str, str] = {}
    for t in sorted(child.tasks.values(), key=lambda t: t.ended or 0):
        merged.update(t.outputs)
    return merged


def _settle(state: State, parent: WorkflowInstance, ti: TaskInstance, child: WorkflowInstance, out: Out) -> None:
    """The child reached a final state: the task ends accordingly (or its kill is confirmed)."""
    why = f"child instance {child.id} ({child.workflow}) ended {child.state}"
    if ti.kill_pending:
        # What the killed task ran is gone: the same fact a worker reports for a process.
        ti.kill_pending = False
        out.append(e.KillConfirmed(instance=parent.id, task=ti.name, attempt=ti.attempt, exit_code=0))
        workflow.maybe_finish(state, parent, out)
        return
    if ti.state not in (RUNNING, PAUSE):
        return
    if child.state == WF_SUCCESS:
        found = _child_outputs(child)
        refused = outputs.problem(found) if found else ""
        if refused:
            workflow.finish_task(state, parent, ti, FAILURE, out, f"{why}, but {refused}")
            return
        ti.outputs = found
        workflow.finish_task(state, parent, ti, SUCCESS, out, why)
    elif child.state == WF_STOP:
        workflow.finish_task(state, parent, ti, KILL, out, why)
    else:
        workflow.finish_task(state, parent, ti, FAILURE, out, why)


def _parent_task(state: State, child: WorkflowInstance) -> tuple[WorkflowInstance, TaskInstance] | None:
    parent = state.instances.get(child.parent) if child.parent else None
    ti = parent.tasks.get(child.parent_task) if parent is not None else None
    if parent is None or ti is None or ti.child != child.id:
        return None
    return parent, ti


def _child_finished(state: State, child: WorkflowInstance, out: Out) -> None:
    found = _parent_task(state, child)
    if found is not None:
        _settle(state, found[0], found[1], child, out)


def _child_paused(state: State, child: WorkflowInstance, out: Out) -> None:
    found = _parent_task(state, child)
    if found is None:
        return
    parent, ti = found
    if ti.state == RUNNING and parent.state == WF_READY_PAUSE:
        ti.state = PAUSE
        task_changed(parent, ti, out, f"child instance {child.id} paused")
        workflow.maybe_finish(state, parent, out)


def _parent_resumed(state: State, parent: WorkflowInstance, out: Out) -> None:
    """A parent resumed before its pause completed: its still-RUNNING SUB_WORKFLOW tasks resume their children."""
    for ti in list(parent.tasks.values()):
        if ti.type == SubWorkflow.name and ti.state == RUNNING and ti.child:
            child = state.instances.get(ti.child)
            if child is not None and child.state in (WF_PAUSE, WF_READY_PAUSE):
                workflow.resume(state, child, out)


workflow.FINISHED.append(_child_finished)
workflow.PAUSED.append(_child_paused)
workflow.RESUMED.append(_parent_resumed)


class SubWorkflow(TaskType):
    """The SUB_WORKFLOW task type."""

    name = "SUB_WORKFLOW"
    definition = SubWorkflowTask
    holds_work = True

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: SubWorkflowTask, out: Out) -> None:
        target = tdef.sub_workflow.workflow
        entry = state.workflows.get(target)
        ti.state = RUNNING
        ti.started = state.now
        if entry is None or not entry.online:
            task_changed(inst, ti, out)
            why = "is not defined" if entry is None else "is OFFLINE: release it"
            workflow.finish_task(state, inst, ti, FAILURE, out, f"child workflow {target!r} {why}")
            return
        params, problem = _child_params(inst, ti, tdef)
        if problem:
            task_changed(inst, ti, out)
            workflow.finish_task(state, inst, ti, FAILURE, out, problem)
            return
        ti.child = _child_id(state)
        task_changed(inst, ti, out, f"child instance {ti.child} of {target!r}")
        try:
            workflow.start_instance(state, target, ti.child, params, inst.schedule_time, inst.zone, "", out,
                                    parent=(inst.id, ti.name))
        except ValueError as exc:  # a time expression in the passed parameters
            ti.child = ""
            workflow.finish_task(state, inst, ti, FAILURE, out, f"sub_workflow.params: {exc}")

    def after_kill(self, state: State, inst: WorkflowInstance, ti: TaskInstance, was: str, reason: str,
                   out: Out) -> None:
        child = state.instances.get(ti.child) if ti.child else None
        if child is None or child.state in WF_FINAL:
            return
        ti.kill_pending = True
        if child.state != WF_READY_STOP:
            workflow.stop(state, child, out)

    def pause(self, state: State, inst: WorkflowInstance, ti: TaskInstance, out: Out) -> None:
        child = state.instances.get(ti.child) if ti.child else None
        if child is None or child.state in WF_FINAL:
            return
        if child.state == WF_RUNNING:
            workflow.pause(state, child, out)
        elif child.state == WF_PAUSE and ti.state == RUNNING:
            _child_paused(state, child, out)

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: SubWorkflowTask, out: Out) -> None:
        child = state.instances.get(ti.child) if ti.child else None
        ti.state = RUNNING
        task_changed(inst, ti, out, "resumed")
        if child is None:
            self.start(state, inst, ti, tdef, out)
        elif child.state in WF_FINAL:
            _settle(state, inst, ti, child, out)
        elif child.state in (WF_PAUSE, WF_READY_PAUSE):
            workflow.resume(state, child, out)

    def check_define(self, state: State, definition: WorkflowDefinition, tdef: SubWorkflowTask) -> str:
        target = tdef.sub_workflow.workflow
        if target != definition.name and target not in state.workflows:
            return f"sub_workflow.workflow {target!r} is not defined: define it first"
        cycle = find_workflow_cycle(state, definition, target)
        if cycle:
            return f"sub_workflow.workflow {target!r} makes a workflow contain itself: {' -> '.join(cycle)}"
        return ""


def _children(definition: WorkflowDefinition) -> list[str]:
    return [t.sub_workflow.workflow for t in definition.tasks if isinstance(t, SubWorkflowTask)]


def find_workflow_cycle(state: State, definition: WorkflowDefinition, target: str) -> list[str]:
    """The chain of workflows from `definition` through `target` back to it, or [] (iterative DFS).

    The other workflows are taken at their newest versions (those a SUB_WORKFLOW starts).
    """
    root = definition.name
    parent: dict[str, str] = {target: root}
    stack = [target]
    while stack:
        name = stack.pop()
        if name == root:
            chain = [root]
            at = parent[root]
            while at != root:
                chain.append(at)
                at = parent[at]
            chain.append(root)
            return chain[::-1]
        entry = state.workflows.get(name)
        if entry is None:
            continue
        for child in _children(entry.latest.definition):
            if child not in parent:
                parent[child] = name
                stack.append(child)
    return []
