"""DEPENDENT: a logic task waiting until other workflows' instances in a date window succeeded.

The date-window maths is `core/dependent.py`; this module is the task's life in the fold:
each check evaluates the items against the upstream index, and while the verdict is
WAITING the task holds one DEPENDENT_CHECK delay-queue entry, due `check_interval` later.
"""

from __future__ import annotations

from easysched_es.core import dependent as windows
from easysched_es.core import events as e
from easysched_es.core import workflow
from easysched_es.core.definitions import DependentTask, DependItem
from easysched_es.core.delay_queue import DEPENDENT_CHECK
from easysched_es.core.state import (
    FAILURE,
    RUNNING,
    SUCCESS,
    TASK_OK,
    WF_FINAL,
    WF_SUCCESS,
    State,
    TaskInstance,
    WorkflowInstance,
)
from easysched_es.core.tasks.base import Out, TaskType, ms, set_timer, task_changed


def _item_result(state: State, item: DependItem, base: int, zone: str) -> str:
    """DolphinScheduler's `calculateResultForTasks`: windows in date order, the first that is
    not a success decides (an empty or unfinished window waits even if a later one failed).
    The windows are days (hours, ...) of `zone`, the instance's `window_zone`."""
    for start, end in windows.windows(item.date_value, base, zone):
        latest = state.latest_upstream(item.workflow, start, end)
        if latest is None or latest.state not in WF_FINAL:
            return windows.WAITING
        ok = latest.task_states.get(item.task) in TASK_OK if item.task is not None else latest.state == WF_SUCCESS
        if not ok:
            return windows.FAILED
    return windows.SUCCESS


def check(state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: DependentTask, out: Out) -> None:
    """Evaluate the dependence once: finish the task, or wait for the next check."""
    dep = tdef.dependence
    results = [_item_result(state, item, inst.base_time, inst.dependent_zone()) for item in dep.items]
    verdict = windows.combine(dep.relation, results)
    detail = ", ".join(
        f"{i.workflow}{'.' + i.task if i.task else ''}/{i.date_value}={r}"
        for i, r in zip(dep.items, results, strict=True)
    )
    out.append(e.DependentChecked(instance=inst.id, task=ti.name, result=verdict, detail=detail))
    if verdict == windows.SUCCESS:
        workflow.finish_task(state, inst, ti, SUCCESS, out, "dependencies satisfied")
        return
    if verdict == windows.FAILED:
        waited = state.now - (ti.first_check or 0)
        if dep.failure_policy == "FAIL" or waited >= ms(dep.failure_waiting_time):
            workflow.finish_task(state, inst, ti, FAILURE, out, f"dependency failed: {detail}")
            return
    set_timer(state, inst, ti.name, DEPENDENT_CHECK, state.now + ms(dep.check_interval), out)


class Dependent(TaskType):
    """The DEPENDENT task type."""

    name = "DEPENDENT"
    definition = DependentTask

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: DependentTask, out: Out) -> None:
        ti.state = RUNNING
        ti.started = state.now
        ti.first_check = state.now
        task_changed(inst, ti, out)
        check(state, inst, ti, tdef, out)

    def on_timer(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: DependentTask, kind: str,
                 out: Out) -> None:
        check(state, inst, ti, tdef, out)

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: DependentTask, out: Out) -> None:
        ti.state = RUNNING
        task_changed(inst, ti, out, "resumed")
        check(state, inst, ti, tdef, out)
