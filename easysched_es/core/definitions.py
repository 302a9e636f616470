"""Workflow definitions: the DAG of tasks a user defines, and its validation.

Field names follow DolphinScheduler so its users feel at home. Durations are seconds
(floats) in definitions; the core works in integer milliseconds.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from easysched_es.core import dag, limits, spawn_rules, time_params

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


class ConditionItem(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One upstream task of a CONDITIONS task and the state it is expected to end in."""

    task: str
    state: Literal["SUCCESS", "FAILURE"] = "SUCCESS"


class ConditionDependence(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The items a CONDITIONS task compares, combined by `relation`."""

    items: list[ConditionItem]
    relation: Relation = "AND"


class ConditionResult(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The branches of a CONDITIONS task: tasks run when the dependence holds, and when not."""

    success_node: list[str] = []
    failed_node: list[str] = []


class ConditionsTask(_TaskBase, tag="CONDITIONS", kw_only=True):
    """A logic task picking the success or the failure branch from its upstreams' states."""

    dependence: ConditionDependence
    condition_result: ConditionResult = msgspec.field(default_factory=ConditionResult)


class SwitchCase(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A SWITCH case: when `condition` (core/expr.py) holds, `next` runs."""

    condition: str
    next: str


class SwitchSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The cases of a SWITCH task, tried in order, and the branch taken when none holds."""

    cases: list[SwitchCase]
    default: str | None = None


class SwitchTask(_TaskBase, tag="SWITCH", kw_only=True):
    """A logic task picking one branch by the first case whose condition holds."""

    switch: SwitchSpec


class SubWorkflowSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The child workflow of a SUB_WORKFLOW task and the parameters passed down (`${name}` allowed)."""

    workflow: str
    params: dict[str, str] = {}


class SubWorkflowTask(_TaskBase, tag="SUB_WORKFLOW", kw_only=True):
    """A logic task running an instance of another workflow; it ends with the child's final state."""

    sub_workflow: SubWorkflowSpec


TaskDef = ShellTask | DependentTask | ConditionsTask | SwitchTask | SubWorkflowTask

WORKER_TASK_TYPES = frozenset({"SHELL"})


AlertOn = Literal["FAILURE", "SUCCESS", "STOP", "TIMEOUT_WARN", "WORKER_LOST"]
ALERT_ON: tuple[str, ...] = ("FAILURE", "SUCCESS", "STOP", "TIMEOUT_WARN", "WORKER_LOST")
MAX_ALERT_ATTEMPTS = 20


class AlertDef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A notification sent when the workflow ends (or warns): a webhook (JSON POST) or a script hook.

    Sending is an effect of the fold (core/alerts.py): at least once, with an idempotency key,
    retried `max_attempts` times with a back-off that doubles from `backoff` seconds.
    """

    webhook: str = ""
    script: str = ""
    on: list[AlertOn] = msgspec.field(default_factory=lambda: ["FAILURE"])
    max_attempts: int = 5
    backoff: float = 2.0


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
    alerts: list[AlertDef] = []
    # Days a finished instance stays in the hot state (core/retention.py); None = the default (30).
    retention_days: float | None = None


def task_type(task: TaskDef) -> str:
    """The DolphinScheduler type name of a task definition."""
    return str(type(task).__struct_config__.tag)


def _alert_problem(alert: AlertDef) -> str:
    if bool(alert.webhook) == bool(alert.script):
        return "give exactly one of webhook (a URL) or script (a shell command)"
    if alert.webhook and not alert.webhook.startswith(("http://", "https://")):
        return f"webhook must be an http:// or https:// URL, not {alert.webhook[:80]!r}"
    if not alert.on:
        return f"on is empty: name at least one of {', '.join(ALERT_ON)}"
    if not 1 <= alert.max_attempts <= MAX_ALERT_ATTEMPTS:
        return f"max_attempts must be 1..{MAX_ALERT_ATTEMPTS}"
    if not 0 < alert.backoff <= MAX_DURATION:  # also false for NaN
        return f"backoff must be a positive number of seconds up to {MAX_DURATION:.0f}"
    return ""


def validate(definition: WorkflowDefinition) -> None:
    """Raise DefinitionError naming the first problem that makes the definition impossible."""
    where = f"workflow {definition.name!r}"
    if not definition.name or not definition.name.strip():
        raise DefinitionError("workflow name is empty")
    if not definition.tasks:
        raise DefinitionError(f"{where} has no tasks")
    spawn_problem = spawn_rules.definition_problem(definition) or limits.definition_problem(definition)
    if spawn_problem:
        raise DefinitionError(f"{where[:80]}: {spawn_problem}")
    for i, alert in enumerate(definition.alerts):
        problem = _alert_problem(alert)
        if problem:
            raise DefinitionError(f"{where[:80]}, alerts[{i}]: {problem}")
    names: set[str] = set()
    for task in definition.tasks:
        if not task.name:
            raise DefinitionError(f"{where}: a task has an empty name")
        if task.name in names:
            raise DefinitionError(f"{where}: duplicate task name {task.name!r}")
        names.add(task.name)
    for task in definition.tasks:
        _validate_task(where, task, names)
    _validate_logic_tasks(where, definition)
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
    elif isinstance(task, ShellTask) and not task.command.strip():
        raise DefinitionError(f"{at}: SHELL command is empty")
    elif isinstance(task, ShellTask):
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


# ---- CONDITIONS, SWITCH, SUB_WORKFLOW ------------------------------------------------------

_PARAM_REF = re.compile(r"\$\{([^}]*)\}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def param_refs(text: str) -> list[str]:
    """The `${name}` references in a parameter value (DefinitionError for a malformed one)."""
    found = _PARAM_REF.findall(text)
    for name in found:
        if not _PARAM_NAME.fullmatch(name):
            raise DefinitionError(f"${{{name[:40]}}} is not a parameter reference (letters, digits, _)")
    return list(found)


def branches(task: TaskDef) -> list[str]:
    """The branch tasks a CONDITIONS or SWITCH task chooses among (definition order, no repeats)."""
    if isinstance(task, ConditionsTask):
        names = [*task.condition_result.success_node, *task.condition_result.failed_node]
    elif isinstance(task, SwitchTask):
        names = [c.next for c in task.switch.cases]
        if task.switch.default is not None:
            names.append(task.switch.default)
    else:
        return []
    return list(dict.fromkeys(names))


def _validate_logic_tasks(where: str, definition: WorkflowDefinition) -> None:
    by_name = {t.name: t for t in definition.tasks}
    for task in definition.tasks:
        at = f"{where}, task {task.name!r}"
        if isinstance(task, ConditionsTask):
            if not task.dependence.items:
                raise DefinitionError(f"{at}: dependence.items is empty (name the upstream tasks to compare)")
            for i, item in enumerate(task.dependence.items):
                if item.task not in task.upstream:
                    raise DefinitionError(
                        f"{at}: dependence.items[{i}].task {item.task!r} is not in this task's upstream list"
                    )
            both = set(task.condition_result.success_node) & set(task.condition_result.failed_node)
            if both:
                raise DefinitionError(f"{at}: condition_result names {sorted(both)[0]!r} in both branches")
            _check_branches(at, task, by_name, "condition_result")
        elif isinstance(task, SwitchTask):
            from easysched_es.core import expr  # a leaf module; imported here to keep this one's imports light

            if not task.switch.cases:
                raise DefinitionError(f"{at}: switch.cases is empty (give at least one case)")
            for i, case in enumerate(task.switch.cases):
                try:
                    expr.parse(case.condition)
                except expr.ExprError as exc:
                    raise DefinitionError(f"{at}: switch.cases[{i}].condition: {exc}") from None
            _check_branches(at, task, by_name, "switch")
        elif isinstance(task, SubWorkflowTask):
            spec = task.sub_workflow
            if not spec.workflow.strip():
                raise DefinitionError(f"{at}: sub_workflow.workflow is empty")
            for key, value in spec.params.items():
                try:
                    param_refs(value)
                except DefinitionError as exc:
                    raise DefinitionError(f"{at}: sub_workflow.params.{key}: {exc}") from None


def _check_branches(at: str, task: TaskDef, by_name: dict[str, TaskDef], field: str) -> None:
    for name in branches(task):
        target = by_name.get(name)
        if target is None:
            raise DefinitionError(f"{at}: {field} names unknown task {name!r}")
        if task.name not in target.upstream:
            raise DefinitionError(
                f"{at}: {field} names {name!r}, which does not list {task.name!r} in its upstream"
            )
