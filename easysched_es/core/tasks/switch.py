"""SWITCH: the first case whose condition holds picks its `next` task, else `default`.

Conditions are `core/expr.py` expressions over the workflow's parameters and the output
parameters the SWITCH received from its upstream tasks (those win a shared name). They are
parsed at define; at run time an unknown name, or a non-number compared with a number by
`<`/`>`, fails the task with the reason, and so does "no case holds" without a default
(DolphinScheduler's rule). The SWITCH ends in the step it starts; the other branches are SKIPPED.
"""

from __future__ import annotations

from easysched_es.core import expr, workflow
from easysched_es.core.definitions import SwitchTask
from easysched_es.core.state import FAILURE, State, TaskInstance, WorkflowInstance
from easysched_es.core.tasks import branching
from easysched_es.core.tasks.base import Out, TaskType


class Switch(TaskType):
    """The SWITCH task type."""

    name = "SWITCH"
    definition = SwitchTask

    def start(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: SwitchTask, out: Out) -> None:
        branching.begin(state, inst, ti, out)
        values = {**inst.params, **ti.inputs} if ti.inputs else inst.params
        for i, case in enumerate(tdef.switch.cases):
            try:
                holds = expr.evaluate(expr.parse(case.condition), values)
            except (expr.EvalError, expr.ExprError) as exc:
                ti.note = f"switch.cases[{i}].condition failed"
                workflow.finish_task(state, inst, ti, FAILURE, out, f"switch.cases[{i}].condition: {exc}")
                return
            if holds:
                detail = f"case {i + 1} ({case.condition}) holds"
                branching.choose(state, inst, ti, tdef, f"case {i + 1}", [case.next], detail, out)
                return
        if tdef.switch.default is None:
            ti.note = "no case holds and there is no default"
            workflow.finish_task(state, inst, ti, FAILURE, out, "no case holds and there is no default branch")
            return
        branching.choose(state, inst, ti, tdef, "default", [tdef.switch.default], "no case holds", out)

    def resume(self, state: State, inst: WorkflowInstance, ti: TaskInstance, tdef: SwitchTask, out: Out) -> None:
        self.start(state, inst, ti, tdef, out)
