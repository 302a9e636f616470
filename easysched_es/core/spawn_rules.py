"""What the runtime can pass to `posix_spawn`, checked where definitions and starts enter the fold.

A task's command, its environment and the workflow's parameters become the environment of
a process. A NUL character cannot be in a C string, and an environment name cannot be empty
or hold `=`: `posix_spawn` refuses them, so a definition holding one could be accepted but
never run. They are refused here instead, with the field named. (Length limits of names and
sizes are capacity rules, checked elsewhere.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text_problem(field: str, value: str) -> str | None:
    """Why `value` cannot reach a process (a NUL character), or None."""
    if "\x00" in value:
        return f"{field} holds a NUL character (\\0), which no process can receive"
    return None


def env_problem(field: str, env: Mapping[str, str]) -> str | None:
    """Why `env` cannot be a process environment (bad names, NUL characters), or None."""
    for name, value in env.items():
        if name and "=" not in name and "\x00" not in name and "\x00" not in value:
            continue  # the common case, without building the field names below
        if not name:
            return f"{field} has an empty name; environment names must be non-empty"
        if "=" in name:
            return f"{field} name {name!r} holds '='; environment names cannot"
        problem = text_problem(f"{field} name {name!r}", name) or text_problem(f"{field} {name!r} value", value)
        if problem:
            return problem
    return None


def definition_problem(definition: Any) -> str | None:
    """The first field of a workflow definition that no process could receive, or None."""
    problem = text_problem("the workflow name", definition.name) or env_problem("parameter", definition.params)
    if problem:
        return problem
    for task in definition.tasks:
        at = f"task {task.name!r}: "
        problem = text_problem("the task name", task.name)
        for up in task.upstream:
            problem = problem or text_problem("an upstream name", up)
        command = getattr(task, "command", None)
        if isinstance(command, str):
            problem = problem or text_problem("the command", command)
        env = getattr(task, "env", None)
        if isinstance(env, dict):
            problem = problem or env_problem("env", env)
        if problem:
            return at + problem
    return None
