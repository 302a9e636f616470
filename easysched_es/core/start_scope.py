"""Start from a task: which tasks an instance runs (DolphinScheduler's start nodes and TaskDependType).

`post` (TASK_POST, DolphinScheduler's default): the start tasks and everything downstream of
them; `pre` (TASK_PRE): the start tasks and everything upstream; `task` (TASK_ONLY): the
start tasks alone. The instance runs that sub-DAG: an upstream outside it counts as absent
(DolphinScheduler builds the DAG of the chosen nodes only), so a start task runs at once.
"""

from __future__ import annotations

from easysched_es.core.state import DefinitionVersion

SCOPES = {"post": "TASK_POST", "pre": "TASK_PRE", "task": "TASK_ONLY"}
_BY_DS_NAME = {v: k for k, v in SCOPES.items()}


def select(dv: DefinitionVersion, from_tasks: list[str], scope: str) -> dict[str, bool] | str:
    """The tasks to run in definition order, or the reason the request is impossible."""
    scope = _BY_DS_NAME.get(scope.upper(), scope.lower())
    if scope not in SCOPES:
        return f"scope {scope!r} is not one of task, pre, post (TASK_ONLY, TASK_PRE, TASK_POST)"
    unknown = [t for t in from_tasks if t not in dv.index]
    if unknown:
        return (f"workflow {dv.definition.name!r} has no task {', '.join(map(repr, unknown))} "
                f"(its tasks: {', '.join(dv.order[:20])}{' ...' if len(dv.order) > 20 else ''})")
    chosen = set(from_tasks)
    todo = list(from_tasks)
    while todo and scope != "task":
        name = todo.pop()
        near = dv.downstream[name] if scope == "post" else dv.task(name).upstream
        for other in near:
            if other not in chosen:
                chosen.add(other)
                todo.append(other)
    return {name: True for name in dv.order if name in chosen}
