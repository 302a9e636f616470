"""What CONDITIONS and SWITCH share: run in the step they start, pick a branch, skip the others."""

from __future__ import annotations

from easysched_es.core import events as e
from easysched_es.core import workflow
from easysched_es.core.definitions import TaskDef, branches
from easysched_es.core.state import RUNNING, SUCCESS, State, TaskInstance, WorkflowInstance
from easysched_es.core.tasks.base import Out, task_changed


def begin(state: State, inst: WorkflowInstance, ti: TaskInstance, out: Out) -> None:
    """The task runs (it ends within this same step)."""
    ti.state = RUNNING
    ti.started = state.now
    task_changed(inst, ti, out)


def choose(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: TaskDef, branch: str, taken: list[str],
           detail: str, out: Out) -> None:
    """Record the choice, end the task SUCCESS, and skip the branch tasks not taken."""
    skipped = [name for name in branches(tdef) if name not in taken]
    out.append(e.BranchChosen(instance=inst.id, task=ti.name, branch=branch, taken=taken, skipped=skipped,
                              detail=detail))
    ti.note = f"{branch} -> {', '.join(taken) or '(no task)'}"
    why = f"not taken: {ti.name} chose {branch}"
    workflow.finish_task(state, inst, ti, SUCCESS, out, f"{detail}: {branch}", skipped, why)
