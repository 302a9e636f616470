"""Workflow files: YAML decoded into the definition model, with errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

from easysched_es.core import commands as c
from easysched_es.core.codec import unencodable
from easysched_es.core.definitions import DefinitionError, WorkflowDefinition, validate
from easysched_es.schedule_times import parse_bound, parse_window


class FlowFileError(ValueError):
    """A workflow file cannot be used; the message names the file and the field."""


class ScheduleBlock(msgspec.Struct, forbid_unknown_fields=True):
    """The `schedule:` block of a workflow file: the same fields as `easysched schedule set`."""

    cron: str
    timezone: str = "UTC"
    start: str | None = None
    end: str | None = None
    overlap: str = "SKIP"
    catchup_window: str | int = 0
    online: bool | None = None
    params: dict[str, str] = {}


def _as_text(value: object) -> str | None:
    """A YAML scalar as DolphinScheduler users mean it: `3` is "3", `true` is "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return value if isinstance(value, str) else None


def stringify_values(data: dict[str, object]) -> str | None:
    """Turn numbers and booleans in `params` and tasks' `env` into strings, in place.

    Returns why a value cannot be a parameter (a list, a mapping, a null), naming the key, or None.
    """
    maps: list[tuple[str, object]] = [("parameter", data.get("params"))]
    tasks = data.get("tasks")
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict):
            maps.append((f"task {str(task.get('name'))[:60]!r} env", task.get("env")))
    for field, values in maps:
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if not isinstance(key, str):
                return (f"{field} name {key!r} is not a string (YAML reads unquoted on/off/yes/no as booleans "
                        "and digits as numbers): quote it")
            text = _as_text(value)
            if text is None:
                kind = "null" if value is None else type(value).__name__
                return f"{field} {str(key)[:60]!r} is a {kind}; a value must be a string, a number or a boolean"
            values[key] = text
    return None


def load_flow(path: str | Path) -> WorkflowDefinition:
    """Read, decode and validate one workflow file (a `schedule:` block is read by `load_schedule`)."""
    return _load(path)[0]


def load_schedule(path: str | Path) -> c.SetSchedule | None:
    """The SetSchedule command of a workflow file's `schedule:` block, or None if it has none."""
    definition, block, p = _load(path)
    if block is None:
        return None
    try:
        return c.SetSchedule(
            workflow=definition.name, cron=block.cron, timezone=block.timezone,
            start=parse_bound(block.start, block.timezone), end=parse_bound(block.end, block.timezone, end=True),
            overlap=block.overlap, catchup_window=parse_window(block.catchup_window), online=block.online,
            params=block.params,
        )
    except ValueError as exc:
        raise FlowFileError(f"{p}: schedule: {exc}") from None


def _load(path: str | Path) -> tuple[WorkflowDefinition, ScheduleBlock | None, Path]:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise FlowFileError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{p}: invalid YAML: {exc}") from None
    except RecursionError:
        raise FlowFileError(f"{p}: the YAML is nested too deeply to read (a workflow needs a few levels)") from None
    if not isinstance(data, dict):
        raise FlowFileError(f"{p}: expected a mapping with `name` and `tasks` at the top level")
    block = None
    if "schedule" in data:
        try:
            block = msgspec.convert(data.pop("schedule"), ScheduleBlock)
        except msgspec.ValidationError as exc:
            raise FlowFileError(f"{p}: schedule: {exc}") from None
    problem = stringify_values(data)
    if problem:
        raise FlowFileError(f"{p}: {problem}")
    try:
        definition = msgspec.convert(data, WorkflowDefinition)
    except msgspec.ValidationError as exc:
        raise FlowFileError(f"{p}: {exc}") from None
    except RecursionError:
        raise FlowFileError(f"{p}: a value is nested too deeply (a workflow needs a few levels)") from None
    problem = unencodable(definition)
    if problem:
        raise FlowFileError(f"{p}: {problem.replace('$', 'the workflow', 1)}")
    try:
        validate(definition)
    except DefinitionError as exc:
        raise FlowFileError(f"{p}: {exc}") from None
    return definition, block, p
