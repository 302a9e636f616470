"""`easysched import-ds`: a pydolphinscheduler YAML workflow file becomes an easysched workflow file.

Read as pydolphinscheduler's `YamlWorkflow` reads it (`workflow:` and `tasks:`; `task_type`
case-insensitive; `deps`), with its special values: `$FILE{"path"}` (the file's text, relative
to the YAML file), `$WORKFLOW{"other.yaml"}` (that file is imported too, and the value is its
workflow's name), `$ENV{NAME}` and `${CONFIG.X}`.

Mapped: Shell, Dependent, Condition, Switch and SubWorkflow tasks; `param` (workflow params),
`schedule` (Quartz cron), `start_time`/`end_time`/`timezone` (the schedule block),
`release_state`, `description`, `worker_group`, and per task `description`,
`fail_retry_times`, `fail_retry_interval` and `timeout` (DolphinScheduler counts both in
minutes; easysched in seconds), `task_priority`, `worker_group` and `local_params` with
direction IN (as the task's environment: DolphinScheduler's `${n}` placeholders then read as
shell variables). Everything else is named in the notes, never dropped silently; a task type
easysched does not have refuses the whole file with its name.

Departures, each in the notes where it applies: `$ENV{X}` becomes `${X}`, read from the
worker's environment when the task runs (pydolphinscheduler reads the submitter's when it
parses); `${CONFIG.X}` is left as written (there is no pydolphinscheduler configuration here);
a dependence whose inner groups mix AND and OR under an outer AND becomes one DEPENDENT task
per group (`NAME_group1`, ...), all upstream of the tasks that depended on NAME.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_FILE = re.compile(r'\$FILE\{"(.*?)"\}')
_WORKFLOW = re.compile(r'\$WORKFLOW\{"(.*?)"\}')
_ENV = re.compile(r"\$ENV\{(.*?)\}")

_WORKFLOW_KEYS = {"name", "description", "param", "schedule", "start_time", "end_time", "timezone",
                  "release_state", "worker_group", "run"}
_COMMON_TASK_KEYS = {"name", "task_type", "deps", "description", "fail_retry_times", "fail_retry_interval",
                     "timeout", "task_priority", "worker_group"}
_CYCLES = {
    "HOUR": ("currentHour", "last1Hour", "last2Hours", "last3Hours", "last24Hours"),
    "DAY": ("today", "last1Days", "last2Days", "last3Days", "last7Days"),
    "WEEK": ("thisWeek", "lastWeek", "lastMonday", "lastTuesday", "lastWednesday", "lastThursday", "lastFriday",
             "lastSaturday", "lastSunday"),
    "MONTH": ("thisMonth", "lastMonth", "lastMonthBegin", "lastMonthEnd", "thisMonthBegin", "thisMonthEnd"),
}


class DsImportError(ValueError):
    """The file cannot be imported; the message names the file and the field."""


@dataclass
class Imported:
    """One easysched workflow made from one pydolphinscheduler file."""

    source: Path
    name: str
    document: dict[str, Any]
    release: bool = True
    notes: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        """The easysched workflow file's text."""
        head = f"# imported from {self.source.name} by `easysched import-ds`\n"
        notes = "".join(f"# note: {n}\n" for n in self.notes)
        return head + notes + yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True)


def import_ds(path: str | Path) -> list[Imported]:
    """Import `path` and every file it references with `$WORKFLOW{...}` (those first)."""
    done: dict[Path, Imported] = {}
    _import(Path(path), done, [])
    return list(done.values())


def _import(path: Path, done: dict[Path, Imported], stack: list[Path]) -> str:
    key = path.resolve()
    if key in done:
        return done[key].name
    if key in stack:
        raise DsImportError(f"{path}: $WORKFLOW references form a cycle: {' -> '.join(p.name for p in stack)}")
    try:
        text = path.read_text()
    except OSError as exc:
        raise DsImportError(f"{path}: cannot read: {exc.strerror}") from None
    # Referenced workflows first, as pydolphinscheduler's prepare_refer_workflow does.
    for ref in dict.fromkeys(_WORKFLOW.findall(text)):
        name = _import(_near(ref, path), done, [*stack, key])
        text = text.replace(f'$WORKFLOW{{"{ref}"}}', name)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DsImportError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("workflow"), dict):
        raise DsImportError(f"{path}: expected a `workflow:` mapping and a `tasks:` list (pydolphinscheduler YAML)")
    done[key] = imported = _Converter(path).convert(data)
    return imported.name


def _near(ref: str, base: Path) -> Path:
    p = Path(ref)
    return p if p.is_absolute() or p.exists() else base.parent / ref


class _Converter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[str] = []

    def fail(self, where: str, message: str) -> DsImportError:
        return DsImportError(f"{self.path}: {where}: {message}")

    def value(self, value: Any, where: str) -> Any:
        """Resolve pydolphinscheduler's special values inside strings (recursively)."""
        if isinstance(value, dict):
            return {k: self.value(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        match = _FILE.match(value)
        if match:
            try:
                value = _near(match.group(1), self.path).read_text()
            except OSError as exc:
                raise self.fail(where, f"$FILE{{{match.group(1)!r}}} cannot be read: {exc.strerror}") from None
        if _ENV.search(value):
            self.notes.append(f"{where}: $ENV{{...}} became ${{...}}: read from the worker's environment at run time")
            value = _ENV.sub(lambda m: "${" + m.group(1) + "}", value)
        if "${CONFIG." in value:
            self.notes.append(f"{where}: ${{CONFIG...}} left as written (no pydolphinscheduler configuration here)")
        return value

    def convert(self, data: dict[str, Any]) -> Imported:
        wf = self.value(data["workflow"], "workflow")
        name = wf.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("workflow.name", "missing")
        doc: dict[str, Any] = {"name": name}
        if wf.get("description"):
            doc["description"] = str(wf["description"])
        if wf.get("param"):
            doc["params"] = {str(k): str(v) for k, v in dict(wf["param"]).items()}
        if wf.get("worker_group"):
            doc["worker_group"] = str(wf["worker_group"])
        for key in sorted(set(wf) - _WORKFLOW_KEYS):
            self.notes.append(f"workflow.{key} is not mapped (easysched has no such setting)")
        if wf.get("run"):
            self.notes.append(f"workflow.run is not mapped: start it with `easysched start {name}`")
        release = str(wf.get("release_state", "online")).lower() != "offline"
        if not release:
            self.notes.append("workflow.release_state offline: defined OFFLINE (`easysched define --offline`)")
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise self.fail("tasks", "expected a non-empty list")
        for i, t in enumerate(tasks):
            kind = str(t.get("task_type", "")).lower() if isinstance(t, dict) else ""
            if getattr(self, f"task_{kind}", None) is None:
                name = t.get("name") if isinstance(t, dict) else None
                raise self.fail(f"tasks[{i}] ({name})", f"task type {kind or None!r} is not supported by easysched "
                                "(it has Shell, Dependent, Condition, Switch, SubWorkflow)")
        doc["tasks"] = self.tasks([self.value(t, f"tasks[{i}]") for i, t in enumerate(tasks)])
        schedule = self.schedule(wf)
        if schedule:
            doc["schedule"] = schedule
        return Imported(self.path, name, doc, release, list(dict.fromkeys(self.notes)))

    def schedule(self, wf: dict[str, Any]) -> dict[str, Any] | None:
        if not wf.get("schedule"):
            for key in ("start_time", "end_time", "timezone"):
                if key in wf:
                    self.notes.append(f"workflow.{key} is not mapped: there is no schedule")
            return None
        block: dict[str, Any] = {"cron": str(wf["schedule"]), "timezone": str(wf.get("timezone") or "UTC")}
        if wf.get("start_time"):
            block["start"] = str(wf["start_time"])
        if wf.get("end_time"):
            block["end"] = str(wf["end_time"])
        return block

    # ---- tasks -----------------------------------------------------------------------------

    def tasks(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        extra_upstream: dict[str, list[str]] = {}  # task -> upstreams the logic tasks imply
        split: dict[str, list[str]] = {}  # a DEPENDENT split in parts -> the parts
        for i, t in enumerate(raw):
            where = f"tasks[{i}]"
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise self.fail(where, "a task needs a `name`")
            kind = str(t.get("task_type", "")).capitalize()
            handler = getattr(self, f"task_{kind.lower()}", None)
            if handler is None:
                raise self.fail(f"{where} ({t['name']})", f"task type {t.get('task_type')!r} is not supported by "
                                "easysched (it has Shell, Dependent, Condition, Switch, SubWorkflow)")
            made = handler(t, where, extra_upstream)
            if len(made) > 1:
                split[t["name"]] = [m["name"] for m in made]
            for task in made:
                self.common(t, task, where)
                out.append(task)
        for task in out:
            ups = [u for up in task.get("upstream", []) for u in split.get(up, [up])]
            ups += [u for u in extra_upstream.get(task["name"], []) if u not in ups]
            if ups:
                task["upstream"] = ups
        return out

    def common(self, t: dict[str, Any], task: dict[str, Any], where: str) -> None:
        deps = t.get("deps") or []
        if deps:
            task["upstream"] = [str(d) for d in deps]
        if t.get("description"):
            task["description"] = str(t["description"])
        if t.get("fail_retry_times"):
            task["retry_times"] = int(t["fail_retry_times"])
        if t.get("fail_retry_interval"):
            task["retry_interval"] = float(t["fail_retry_interval"]) * 60  # DolphinScheduler: minutes
        if t.get("timeout"):
            task["timeout"] = float(t["timeout"]) * 60  # DolphinScheduler: minutes
        if t.get("task_priority"):
            task["priority"] = str(t["task_priority"]).upper()
        if t.get("worker_group"):
            task["worker_group"] = str(t["worker_group"])

    def unmapped(self, t: dict[str, Any], where: str, known: set[str]) -> None:
        for key in sorted(set(t) - _COMMON_TASK_KEYS - known):
            self.notes.append(f"{where} ({t['name']}): {key} is not mapped")

    def task_shell(self, t: dict[str, Any], where: str, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
        self.unmapped(t, where, {"command", "local_params", "input_params"})
        task: dict[str, Any] = {"name": t["name"], "type": "SHELL", "command": str(t.get("command", ""))}
        env = {str(k): str(v) for k, v in dict(t.get("input_params") or {}).items()}
        for j, param in enumerate(t.get("local_params") or []):
            if isinstance(param, dict) and str(param.get("direct", "IN")).upper() == "IN" and "prop" in param:
                env[str(param["prop"])] = str(param.get("value", ""))
            else:
                self.notes.append(f"{where}.local_params[{j}] ({t['name']}): only IN parameters are mapped")
        if env:
            task["env"] = env
        return [task]

    def task_subworkflow(self, t: dict[str, Any], where: str, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
        self.unmapped(t, where, {"workflow_name"})
        if not t.get("workflow_name"):
            raise self.fail(f"{where} ({t['name']})", "SubWorkflow needs workflow_name")
        return [{"name": t["name"], "type": "SUB_WORKFLOW", "sub_workflow": {"workflow": str(t["workflow_name"])}}]

    def task_switch(self, t: dict[str, Any], where: str, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
        self.unmapped(t, where, {"condition"})
        cases, default = [], None
        for j, case in enumerate(t.get("condition") or []):
            if not isinstance(case, dict) or "task" not in case:
                raise self.fail(f"{where}.condition[{j}]",
                                "each case needs `task` (and `condition`, except the default)")
            target = str(case["task"])
            extra.setdefault(target, []).append(t["name"])  # pydolphinscheduler: branches are downstream
            if case.get("condition") is None:
                default = target
            else:
                cases.append({"condition": str(case["condition"]), "next": target})
        spec: dict[str, Any] = {"cases": cases}
        if default:
            spec["default"] = default
        return [{"name": t["name"], "type": "SWITCH", "switch": spec}]

    def _groups(self, t: dict[str, Any], where: str) -> tuple[str, list[tuple[str, list[dict[str, Any]]]]]:
        op = str(t.get("op", "and")).upper()
        groups = []
        for j, group in enumerate(t.get("groups") or []):
            if not isinstance(group, dict) or not isinstance(group.get("groups"), list):
                raise self.fail(f"{where}.groups[{j}]", "expected {op: and|or, groups: [...]}")
            groups.append((str(group.get("op", "and")).upper(), group["groups"]))
        if op not in ("AND", "OR") or any(g[0] not in ("AND", "OR") for g in groups):
            raise self.fail(where, "op must be AND or OR")
        if not groups:
            raise self.fail(where, "groups is empty")
        return op, groups

    def task_condition(self, t: dict[str, Any], where: str, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
        self.unmapped(t, where, {"success_task", "failed_task", "op", "groups"})
        op, groups = self._groups(t, where)
        relation = _one_relation(op, groups)
        if relation is None:
            raise self.fail(where, "groups mixing AND and OR cannot be expressed (a CONDITIONS task has one relation)")
        items = [{"task": str(c["task"]), "state": "SUCCESS" if c.get("flag", True) else "FAILURE"}
                 for _, group in groups for c in group]
        upstream = list(dict.fromkeys(i["task"] for i in items))
        result: dict[str, Any] = {}
        for key, node in (("success_task", "success_node"), ("failed_task", "failed_node")):
            if t.get(key):
                result[node] = [str(t[key])]
                extra.setdefault(str(t[key]), []).append(t["name"])
        task = {"name": t["name"], "type": "CONDITIONS", "upstream": upstream,
                "dependence": {"relation": relation, "items": items}, "condition_result": result}
        extra.setdefault(t["name"], []).extend(upstream)
        return [task]

    def task_dependent(self, t: dict[str, Any], where: str, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
        self.unmapped(t, where, {"op", "groups", "denpendence", "dependence"})
        op, groups = self._groups(t, where)
        relation = _one_relation(op, groups)
        if relation is not None:
            items = [self.item(i, f"{where}.groups") for _, g in groups for i in g]
            return [{"name": t["name"], "type": "DEPENDENT", "dependence": {"relation": relation, "items": items}}]
        if op != "AND":
            raise self.fail(where, "an OR of groups that mix AND and OR cannot be expressed in easysched")
        self.notes.append(f"{where} ({t['name']}): an AND of {len(groups)} groups became {len(groups)} DEPENDENT "
                          f"tasks {t['name']}_group1.. (one relation each), all upstream of its downstream tasks")
        return [{"name": f"{t['name']}_group{j + 1}", "type": "DEPENDENT",
                 "dependence": {"relation": g_op, "items": [self.item(i, f"{where}.groups[{j}]") for i in g]}}
                for j, (g_op, g) in enumerate(groups)]

    def item(self, raw: dict[str, Any], where: str) -> dict[str, Any]:
        if not isinstance(raw, dict) or not raw.get("workflow_name"):
            raise self.fail(where, "a dependent item needs workflow_name")
        if raw.get("project_name"):
            project = raw["project_name"]
            self.notes.append(f"{where}: project_name {project!r} is not mapped (easysched has no projects)")
        date = _date_value(str(raw.get("dependent_date", "today")))
        cycle = next((c for c, values in _CYCLES.items() if date in values), "DAY")
        item: dict[str, Any] = {"workflow": str(raw["workflow_name"]), "cycle": cycle, "date_value": date}
        task = raw.get("dependent_task_name")
        if task and str(task).upper() != "ALL":
            item["task"] = str(task)
        return item


def _one_relation(op: str, groups: list[tuple[str, list[dict[str, Any]]]]) -> str | None:
    """The single relation equal to `op` over `groups`, or None when they mix AND and OR."""
    ops = {g_op for g_op, g in groups if len(g) > 1}
    if len(groups) == 1:
        return groups[0][0] if len(groups[0][1]) > 1 else op
    return op if ops <= {op} else None


def _date_value(text: str) -> str:
    """A DependentDate key (LAST_WEDNESDAY) or value (lastWednesday) as the value, as pydolphinscheduler reads it."""
    return _DATE_KEYS.get(text.strip().upper(), text.strip())


# pydolphinscheduler's DependentDate constants (key -> value).
_DATE_KEYS = {
    "CURRENT_HOUR": "currentHour", "LAST_ONE_HOUR": "last1Hour", "LAST_TWO_HOURS": "last2Hours",
    "LAST_THREE_HOURS": "last3Hours", "LAST_TWENTY_FOUR_HOURS": "last24Hours", "TODAY": "today",
    "LAST_ONE_DAYS": "last1Days", "LAST_TWO_DAYS": "last2Days", "LAST_THREE_DAYS": "last3Days",
    "LAST_SEVEN_DAYS": "last7Days", "THIS_WEEK": "thisWeek", "LAST_WEEK": "lastWeek", "LAST_MONDAY": "lastMonday",
    "LAST_TUESDAY": "lastTuesday", "LAST_WEDNESDAY": "lastWednesday", "LAST_THURSDAY": "lastThursday",
    "LAST_FRIDAY": "lastFriday", "LAST_SATURDAY": "lastSaturday", "LAST_SUNDAY": "lastSunday",
    "THIS_MONTH": "thisMonth", "LAST_MONTH": "lastMonth", "LAST_MONTH_BEGIN": "lastMonthBegin",
    "LAST_MONTH_END": "lastMonthEnd",
}
