"""CONDITIONS: compare upstream tasks' states with expected ones; run the success or the failure branch.

It starts once its upstreams are final, whatever their state (`after_failure`), so a failure
upstream of it is handled: it does not trigger failure strategy END and does not fail the
workflow. An item expecting SUCCESS holds when the task SUCCEEDED (or FORCED_SUCCESS); one
expecting FAILURE holds when it FAILED or was killed; a SKIPPED task holds neither. Items
combine by AND/OR; the CONDITIONS task ends SUCCESS in the step it starts, the tasks of the
other branch become SKIPPED (see `workflow.submit` for what follows downstream of them).
"""

from __future__ import annotations

from easysched_es.core.definitions import ConditionsTask
from easysched_es.core.state import FAILURE, KILL, TASK_OK, State, TaskInstance, WorkflowInstance
from easysched_es.core.tasks import branching
from easysched_es.core.tasks.base import Out, TaskType

_FAILED = frozenset({FAILURE, KILL})


def evaluate(inst: WorkflowInstance, tdef: ConditionsTask) -> tuple[bool, str]:
    """Whether the dependence holds, and a description of each item."""
    results = []
    parts = []
    for item in tdef.dependence.items:
        up = inst.tasks.get(item.task)
        actual = up.state if up is not None else "not run"
        ok = actual in TASK_OK if item.state == "SUCCESS" else actual in _FAILED
        results.append(ok)
        parts.append(f"{item.task} is {actual} (expected {item.state})")
    holds = all(results) if tdef.dependence.relation == "AND" else any(results)
    return holds, f"{f' {tdef.dependence.relation} '.join(parts)}: {'holds' if holds else 'does not hold'}"


class Conditions(TaskType):
    """The CONDITIONS task type."""

    name = "CONDITIONS"
    definition = ConditionsTask
    after_failure = True

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ConditionsTask, out: Out) -> None:
        branching.begin(state, inst, ti, out)
        holds, detail = evaluate(inst, tdef)
        result = tdef.condition_result
        branch, taken = ("success_node", result.success_node) if holds else ("failed_node", result.failed_node)
        branching.choose(state, inst, ti, tdef, branch, list(taken), detail, out)

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: ConditionsTask, out: Out) -> None:
        self.start(state, inst, ti, tdef, out)
