"""Workflow definitions: the DAG of tasks a user defines, and its validation.

Field names follow DolphinScheduler so its users feel at home. Durations are seconds
(floats) in definitions; the core works in integer milliseconds.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from easysched_es.core import dag, time_params

Relation = Literal["AND", "OR"]
Cycle = Literal["MINUTE", "HOUR", "DAY", "WEEK", "MONTH"]
FailurePolicy = Literal["FAIL", "WAIT"]
TimeoutStrategy = Literal["WARN", "FAILED", "WARNFAILED"]
FailureStrategy = Literal["CONTINUE", "END"]
# DolphinScheduler's Priority, best first: the wait queue for slots is ordered by it.
Priority = Literal["HIGHEST", "HIGH", "MEDIUM", "LOW", "LOWEST"]
PRIORITIES: tuple[str, ...] = ("HIGHEST", "HIGH", "MEDIUM", "LOW", "LOWEST")

# Which date values each cycle accepts (DolphinScheduler's dependent date values).
DATE_VALUES: dict[str, tuple[str, ...]] = {
    "MINUTE": ("currentMinute", "last1Minute", "last5Minutes", "last10Minutes", "last30Minutes"),
    "HOUR": ("currentHour", "last1Hour", "last2Hours", "last3Hours", "last24Hours"),
    "DAY": ("today", "last1Days", "last2Days", "last3Days", "last7Days"),
    "WEEK": (
        "thisWeek", "lastWeek", "lastMonday", "lastTuesday", "lastWednesday", "lastThursday",
        "lastFriday", "lastSaturday", "lastSunday",
    ),
    "MONTH": ("thisMonth", "thisMonthBegin", "thisMonthEnd", "lastMonth", "lastMonthBegin", "lastMonthEnd"),
}


# The longest duration (seconds) a definition may hold: ten years. NaN, infinities and
# larger values would make the fold's millisecond arithmetic fail on every replay.
MAX_DURATION = 10 * 365 * 86_400.0


MIN_CHECK_INTERVAL = 0.05


class DefinitionError(ValueError):
    """A workflow definition is impossible (cycle, unknown upstream, ...)."""


class DependItem(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One upstream condition of a DEPENDENT task."""

    workflow: str
    task: str | None = None
    cycle: Cycle = "DAY"
    date_value: str = "today"


class Dependence(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The dependence block of a DEPENDENT task."""

    items: list[DependItem]
    relation: Relation = "AND"
    check_interval: float = 10.0
    failure_policy: FailurePolicy = "FAIL"
    failure_waiting_time: float = 0.0


class _TaskBase(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    name: str
    upstream: list[str] = []
    description: str = ""
    retry_times: int = 0
    retry_interval: float = 0.0
    timeout: float | None = None
    timeout_strategy: TimeoutStrategy = "WARN"
    priority: Priority = "MEDIUM"
    # None: the workflow's worker_group.
    worker_group: str | None = None


class ShellTask(_TaskBase, tag="SHELL", kw_only=True):
    """A script run by a worker as a subprocess; exit code 0 means SUCCESS."""

    command: str
    env: dict[str, str] = {}
    # A named pool (`easysched pool set NAME --slots N`) the task takes a slot of while it runs.
    pool: str | None = None


class DependentTask(_TaskBase, tag="DEPENDENT", kw_only=True):
    """A logic task, evaluated by the master, waiting on other workflows' results."""

    dependence: Dependence


TaskDef = ShellTask | DependentTask

WORKER_TASK_TYPES = frozenset({"SHELL"})


class WorkflowDefinition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A workflow: named tasks and their upstream edges."""

    name: str
    tasks: list[TaskDef]
    description: str = ""
    params: dict[str, str] = {}
    failure_strategy: FailureStrategy = "CONTINUE"
    worker_group: str = "default"
    priority: Priority = "MEDIUM"
    # 0 = no limit. At most this many SHELL tasks of one instance hold a slot at a time.
    max_parallel_tasks: int = 0
    # 0 = no limit. Further starts of the workflow wait in a queue (see core/capacity.py).
    max_active_instances: int = 0


def task_type(task: TaskDef) -> str:
    """The DolphinScheduler type name of a task definition."""
    return "SHELL" if isinstance(task, ShellTask) else "DEPENDENT"


def validate(definition: WorkflowDefinition) -> None:
    """Raise DefinitionError naming the first problem that makes the definition impossible."""
    where = f"workflow {definition.name!r}"
    if not definition.name or not definition.name.strip():
        raise DefinitionError("workflow name is empty")
    if not definition.tasks:
        raise DefinitionError(f"{where} has no tasks")
    names: set[str] = set()
    for task in definition.tasks:
        if not task.name:
            raise DefinitionError(f"{where}: a task has an empty name")
        if task.name in names:
            raise DefinitionError(f"{where}: duplicate task name {task.name!r}")
        names.add(task.name)
    for task in definition.tasks:
        _validate_task(where, task, names)
    for key, value in definition.params.items():
        reason = time_params.check(value)
        if reason:
            raise DefinitionError(f"{where}: parameter {key!r}: {reason}")
    cycle = find_cycle(definition)
    if cycle:
        raise DefinitionError(f"{where}: tasks form a cycle: {dag.describe_cycle(cycle)}")


def _validate_task(where: str, task: TaskDef, names: set[str]) -> None:
    at = f"{where}, task {task.name!r}"
    for up in task.upstream:
        if up not in names:
            raise DefinitionError(f"{at}: unknown upstream task {up!r}")
        if up == task.name:
            raise DefinitionError(f"{at}: a task cannot be its own upstream")
    durations = {"retry_interval": task.retry_interval, "timeout": task.timeout or 0.0}
    if isinstance(task, DependentTask):
        durations["check_interval"] = task.dependence.check_interval
        durations["failure_waiting_time"] = task.dependence.failure_waiting_time
    for field, value in durations.items():
        if not -MAX_DURATION <= value <= MAX_DURATION:  # also false for NaN
            raise DefinitionError(f"{at}: {field} must be a finite number of seconds up to {MAX_DURATION:.0f}")
    if task.retry_times < 0 or task.retry_interval < 0:
        raise DefinitionError(f"{at}: retry_times and retry_interval must be >= 0")
    if task.timeout is not None and task.timeout <= 0:
        raise DefinitionError(f"{at}: timeout must be > 0 seconds")
    if isinstance(task, DependentTask):
        dep = task.dependence
        if not dep.items:
            raise DefinitionError(f"{at}: dependence has no items")
        if dep.check_interval < MIN_CHECK_INTERVAL:
            # A re-check due at once would have the ticker append CheckDue in a busy loop.
            raise DefinitionError(f"{at}: check_interval must be >= {MIN_CHECK_INTERVAL:g} seconds")
        if dep.failure_waiting_time < 0:
            raise DefinitionError(f"{at}: failure_waiting_time must be >= 0")
        for item in dep.items:
            allowed = DATE_VALUES[item.cycle]
            if item.date_value not in allowed:
                raise DefinitionError(
                    f"{at}: date_value {item.date_value!r} is not valid for cycle {item.cycle}; "
                    f"use one of {', '.join(allowed)}"
                )
    elif not task.command.strip():
        raise DefinitionError(f"{at}: SHELL command is empty")
    else:
        for key, text in task.env.items():
            reason = time_params.check(text)
            if reason:
                raise DefinitionError(f"{at}: env {key!r}: {reason}")


def find_cycle(definition: WorkflowDefinition) -> list[str]:
    """Return one cycle as a list of task names (first name repeated at the end), or []."""
    return dag.find_cycle({t.name: t.upstream for t in definition.tasks})


def topological_order(definition: WorkflowDefinition) -> list[str]:
    """Task names so that every task follows its upstreams; ties keep definition order."""
    order = dag.topological_order({t.name: t.upstream for t in definition.tasks})
    if order is None:
        raise DefinitionError(f"workflow {definition.name!r}: tasks form a cycle")
    return order
